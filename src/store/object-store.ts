/**
 * Object storage for recipes and image artifacts (docs/architecture.md#object-store). Two implementations: a directory
 * on local disk (the default, `file:///var/lib/kiln/objects`) and S3 (`s3://…`, any S3 server:
 * Ceph RGW in tests and in the systems Kiln replaces). Keys and buckets follow IMS: bucket `ims`
 * holds `recipes/<id>/recipe.tar.gz` (Kiln's own upload: `recipes/<id>/<upload id>/recipe.tar.gz`), bucket `boot-images` holds `<image_id>/rootfs`, `/kernel`,
 * `/initrd`, `/boot_parameters`, `/manifest.json`.
 *
 * Contract, for every implementation (test/integration/object-store-contract.test.ts runs the same
 * suite against each):
 *  - bodies are streams, never whole buffers: a multi-GB rootfs passes with bounded memory;
 *  - put() returns only when the object is stored whole; a reader never sees a partial object;
 *  - metadata keys are lower-case; `md5sum` is set by callers as IMS does;
 *  - get/head of a missing key (or of a key in a missing bucket) reject with ObjectNotFound; delete
 *    of a missing key is not an error;
 *  - buckets exist before use: put/list/copy into a bucket that ensureBucket() never made fail, as
 *    on S3 (no silent auto-create that would hide a misspelled bucket);
 *  - list() returns keys under a prefix in lexical (byte) order, with no metadata (S3 lists none:
 *    head() the ones you need);
 *  - ranges are HTTP byte ranges: `end` is inclusive, omitted means to the end of the object;
 *  - no type from the S3 SDK appears in this interface.
 * Configuration and I/O failures are KilnErrors (STORE_CONFIG, STORE_FAILED) whose message starts
 * with the store's kind, e.g. `store s3: "access key" is required (env KILN_S3_ACCESS_KEY)`.
 */
import type { Readable } from "node:stream";

/** What list() knows of an object. */
export interface ObjectSummary {
  bucket: string;
  key: string;
  size: number;
  /** The store's entity tag, quotes stripped (S3: md5, or md5-of-parts-N for multipart). */
  etag: string;
  lastModified: Date;
}

/** What head() and put() know of an object. */
export interface ObjectInfo extends ObjectSummary {
  metadata: Record<string, string>;
  contentType?: string;
}

export interface PutOptions {
  contentType?: string;
  metadata?: Record<string, string>;
  /**
   * Size in bytes when known: a body of another size fails the put and nothing is stored (a
   * truncated artifact never lands); S3 also picks parts big enough for the 10,000-part limit.
   */
  size?: number;
}

export interface ObjectStore {
  /** e.g. "file:///var/lib/kiln/objects" or "s3://host:port" (no credentials). */
  readonly url: string;
  ensureBucket(bucket: string): Promise<void>;
  put(bucket: string, key: string, body: Readable | Buffer | string, opts?: PutOptions): Promise<ObjectInfo>;
  get(bucket: string, key: string, range?: { start: number; end?: number }): Promise<Readable>;
  head(bucket: string, key: string): Promise<ObjectInfo>;
  list(bucket: string, prefix?: string): Promise<ObjectSummary[]>;
  delete(bucket: string, key: string): Promise<void>;
  copy(bucket: string, fromKey: string, toKey: string): Promise<ObjectInfo>;
  /**
   * A URL a client can GET (with Range, too) without credentials, valid for `seconds`; a changed
   * URL is refused. S3 signs it (SigV4, at most 7 days); the fs store's URLs point at the
   * service, which answers them with serveSignedObject() (src/store/fs-presign.ts).
   */
  presignGet(bucket: string, key: string, seconds: number): Promise<string>;
  close(): Promise<void>;
}

export class ObjectNotFound extends Error {
  constructor(
    readonly bucket: string,
    readonly key: string,
  ) {
    super(`object not found: ${bucket}/${key}`);
    this.name = "ObjectNotFound";
  }
}

/**
 * The S3 object store (@aws-sdk/client-s3 v3), tested against Ceph RGW 16, the server of the
 * systems Kiln replaces (docs/architecture.md#object-store: its quirks). Every SDK type stays inside this file.
 *
 * Streams go up through lib-storage's Upload: at most `queueSize` parts of `partSize` bytes are
 * buffered, so a multi-GB rootfs passes in ~partSize × (queueSize + 1) of memory. Buffers and
 * strings go in one PutObject with Content-MD5, which the server checks.
 */
import { createHash } from "node:crypto";
import { pipeline, Readable, Transform } from "node:stream";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCopyCommand,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { isKilnError } from "../errors.js";
import { ObjectNotFound, type ObjectInfo, type ObjectStore, type ObjectSummary, type PutOptions } from "./object-store.js";
import { PatientRetryStrategy } from "./s3-retry.js";
import { missingBucket, storeBadRequest, storeFailed, storeUnavailable } from "./store-errors.js";

export interface S3StoreOptions {
  /** `http(s)://host:port` of the S3 server. */
  endpoint: string;
  /** The store's URL as the user gave it, without credentials (ObjectStore.url). */
  url: string;
  region: string;
  accessKey: string;
  secretKey: string;
  /** Multipart part size for streamed puts; default 8 MiB (S3's minimum is 5 MiB). */
  partSize?: number;
  /** Parts uploaded at once; default 4. */
  queueSize?: number;
  /** How long a failing request is retried (connection errors, 5xx) before it fails; default 60. */
  retrySeconds?: number;
  /** Objects larger than this are copied part by part; CopyObject stops at 5 GiB (S3 and RGW). */
  copyThreshold?: number;
  /** Part size of such copies; default 512 MiB. */
  copyPartSize?: number;
}

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** S3 allows 10,000 parts; keep a margin so a size estimate a little short still fits. */
const MAX_PARTS = 9000;
/** SigV4 presigned URLs are valid for at most 7 days. */
const MAX_PRESIGN_SECONDS = 7 * 24 * 3600;

export class S3Store implements ObjectStore {
  readonly url: string;
  private readonly client: S3Client;
  private readonly partSize: number;
  private readonly queueSize: number;
  private readonly copyThreshold: number;
  private readonly copyPartSize: number;
  private readonly retrySeconds: number;

  constructor(private readonly opts: S3StoreOptions) {
    this.url = opts.url;
    this.partSize = opts.partSize ?? 8 * MiB;
    this.queueSize = opts.queueSize ?? 4;
    this.copyThreshold = opts.copyThreshold ?? 5 * GiB;
    this.copyPartSize = opts.copyPartSize ?? 512 * MiB;
    this.retrySeconds = opts.retrySeconds ?? 60;
    // The SDK warns on every start under Node 20 that its releases after January 2027 need Node 22;
    // the lock file pins this one, and an operator can do nothing about it ("false" shows it again).
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
    this.client = new S3Client({
      endpoint: opts.endpoint,
      region: opts.region,
      credentials: { accessKeyId: opts.accessKey, secretAccessKey: opts.secretKey },
      // s3.md quirk 3: RGW without rgw_dns_name resolves only path-style bucket names.
      forcePathStyle: true,
      // s3.md quirk 2: the SDK's default CRC32 sends streamed bodies as aws-chunked, which RGW 16
      // refuses (411 MissingContentLength). Content-MD5 and the ETag check integrity instead.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      // Ride out a restart or a network blip instead of failing the job (s3-retry.ts).
      retryStrategy: new PatientRetryStrategy({ budgetSeconds: this.retrySeconds }),
    });
  }

  async ensureBucket(bucket: string): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: bucket }));
      return;
    } catch (e) {
      if (statusOf(e) !== 404) throw this.failed(`ensure bucket ${bucket}`, e);
    }
    try {
      await this.client.send(new CreateBucketCommand({ Bucket: bucket }));
    } catch (e) {
      // Another process made it between our HEAD and CREATE.
      if ((e as Error).name !== "BucketAlreadyOwnedByYou") throw this.failed(`create bucket ${bucket}`, e);
    }
  }

  async put(bucket: string, key: string, body: Readable | Buffer | string, opts: PutOptions = {}): Promise<ObjectInfo> {
    const what = `put ${bucket}/${key}`;
    const params = {
      Bucket: bucket,
      Key: key,
      ContentType: opts.contentType ?? "application/octet-stream",
      Metadata: opts.metadata ?? {},
    };
    try {
      if (typeof body === "string" || Buffer.isBuffer(body)) {
        const bytes = Buffer.from(body);
        if (opts.size !== undefined && opts.size !== bytes.length) throw sizeMismatch(what, bytes.length, opts.size);
        const md5 = createHash("md5").update(bytes).digest("base64");
        await this.client.send(new PutObjectCommand({ ...params, Body: bytes, ContentMD5: md5 }));
      } else {
        const upload = new Upload({
          client: this.client,
          // pipeline, not pipe: an error of the source must fail the upload, not stall it.
          params: { ...params, Body: pipeline(body, checkSize(what, opts.size), () => {}) },
          partSize: partSizeFor(opts.size, this.partSize),
          queueSize: this.queueSize,
        });
        await upload.done();
      }
    } catch (e) {
      throw this.failed(what, e, bucket);
    }
    // s3.md quirk 1: RGW 16 answers CompleteMultipartUpload with an empty ETag; HEAD has it.
    return this.head(bucket, key);
  }

  async get(bucket: string, key: string, range?: { start: number; end?: number }): Promise<Readable> {
    if (range?.end !== undefined && range.end < range.start) {
      // S3 would ignore such a Range header and send the whole object.
      throw storeBadRequest("s3", `get ${bucket}/${key}`, `range ${range.start}-${range.end} ends before it starts`);
    }
    try {
      const res = await this.client.send(
        new GetObjectCommand({ Bucket: bucket, Key: key, Range: range ? `bytes=${range.start}-${range.end ?? ""}` : undefined }),
      );
      if (!(res.Body instanceof Readable)) throw new Error("the SDK returned no Node.js stream");
      return res.Body;
    } catch (e) {
      if (statusOf(e) === 416) {
        throw storeBadRequest("s3", `get ${bucket}/${key}`, `range ${range?.start}-${range?.end ?? ""} is outside the object`);
      }
      throw this.notFoundOr(`get ${bucket}/${key}`, e, bucket, key);
    }
  }

  async head(bucket: string, key: string): Promise<ObjectInfo> {
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      return {
        bucket,
        key,
        size: res.ContentLength ?? 0,
        etag: unquote(res.ETag),
        lastModified: res.LastModified ?? new Date(0),
        metadata: res.Metadata ?? {},
        contentType: res.ContentType,
      };
    } catch (e) {
      throw this.notFoundOr(`head ${bucket}/${key}`, e, bucket, key);
    }
  }

  async list(bucket: string, prefix = ""): Promise<ObjectSummary[]> {
    const found: ObjectSummary[] = [];
    let token: string | undefined;
    try {
      do {
        const page = await this.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
        for (const o of page.Contents ?? []) {
          found.push({ bucket, key: o.Key ?? "", size: o.Size ?? 0, etag: unquote(o.ETag), lastModified: o.LastModified ?? new Date(0) });
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
    } catch (e) {
      throw this.failed(`list ${bucket}/${prefix}`, e, bucket);
    }
    return found;
  }

  async delete(bucket: string, key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    } catch (e) {
      throw this.failed(`delete ${bucket}/${key}`, e, bucket);
    }
  }

  async copy(bucket: string, fromKey: string, toKey: string): Promise<ObjectInfo> {
    const what = `copy ${bucket}/${fromKey} to ${toKey}`;
    const src = await this.head(bucket, fromKey);
    const source = `${bucket}/${fromKey.split("/").map(encodeURIComponent).join("/")}`;
    try {
      if (src.size > this.copyThreshold) await this.copyInParts(bucket, source, toKey, src);
      else await this.client.send(new CopyObjectCommand({ Bucket: bucket, Key: toKey, CopySource: source, CopySourceIfMatch: `"${src.etag}"` }));
    } catch (e) {
      throw this.notFoundOr(what, e, bucket, fromKey);
    }
    return this.head(bucket, toKey);
  }

  async presignGet(bucket: string, key: string, seconds: number): Promise<string> {
    if (!Number.isInteger(seconds) || seconds <= 0 || seconds > MAX_PRESIGN_SECONDS) {
      throw new RangeError(`store s3: presigned URLs last 1 to ${MAX_PRESIGN_SECONDS} seconds (7 days, SigV4), got ${seconds}`);
    }
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: bucket, Key: key }), { expiresIn: seconds });
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  /** Server-side copy of a large object: UploadPartCopy ranges, each pinned to the source's ETag. */
  private async copyInParts(bucket: string, source: string, toKey: string, src: ObjectInfo): Promise<void> {
    const { UploadId } = await this.client.send(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: toKey, ContentType: src.contentType, Metadata: src.metadata }),
    );
    try {
      const partSize = Math.max(this.copyPartSize, Math.ceil(src.size / MAX_PARTS));
      const parts: { PartNumber: number; ETag: string | undefined }[] = [];
      for (let start = 0, n = 1; start < src.size; start += partSize, n++) {
        const end = Math.min(start + partSize, src.size) - 1;
        const res = await this.client.send(
          new UploadPartCopyCommand({
            Bucket: bucket,
            Key: toKey,
            UploadId,
            PartNumber: n,
            CopySource: source,
            CopySourceRange: `bytes=${start}-${end}`,
            CopySourceIfMatch: `"${src.etag}"`,
          }),
        );
        parts.push({ PartNumber: n, ETag: res.CopyPartResult?.ETag });
      }
      await this.client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: toKey, UploadId, MultipartUpload: { Parts: parts } }));
    } catch (e) {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: toKey, UploadId })).catch(() => {});
      throw e;
    }
  }

  private notFoundOr(what: string, e: unknown, bucket: string, key: string): Error {
    // HEAD answers a bare 404 for a missing key and a missing bucket alike; GET names them.
    const name = (e as Error).name;
    if (name === "NoSuchKey" || name === "NotFound" || name === "NoSuchBucket" || statusOf(e) === 404) return new ObjectNotFound(bucket, key);
    return this.failed(what, e, bucket);
  }

  private failed(what: string, e: unknown, bucket?: string): Error {
    if (e instanceof ObjectNotFound || isKilnError(e)) return e;
    const err = e as Error & { code?: string };
    if (err.name === "NoSuchBucket" && bucket) return missingBucket("s3", what, bucket);
    const status = statusOf(e);
    const retried = (e as { $metadata?: { attempts?: number } }).$metadata?.attempts ?? 1;
    const gaveUp = retried > 1 ? ` after ${retried} attempts in ${this.retrySeconds} s` : "";
    if (status !== undefined && status >= 500) {
      return storeUnavailable("s3", what, `${status} ${err.name}${gaveUp}`, e);
    }
    if (status !== undefined) {
      return storeFailed("s3", what, `${status} ${err.name}${err.message && err.message !== err.name ? `: ${err.message}` : ""}`, e);
    }
    const code = err.code ?? (err.cause as { code?: string } | undefined)?.code;
    if (code && /^(ECONN|ENOTFOUND|EAI_|EHOST|ENETUNREACH|ETIMEDOUT|EPIPE|EPROTO)/.test(code)) {
      return storeUnavailable("s3", what, `cannot reach ${this.opts.endpoint} (${code})${gaveUp}`, e);
    }
    // Not from the server: a failing body stream, a TLS mismatch, a timeout …
    return storeFailed("s3", what, `${err.name}: ${err.message}`, e);
  }
}

function statusOf(e: unknown): number | undefined {
  return (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
}

function unquote(etag: string | undefined): string {
  return (etag ?? "").replace(/^"|"$/g, "");
}

/** Parts big enough that a known size fits in MAX_PARTS, in whole MiB. */
function partSizeFor(size: number | undefined, preferred: number): number {
  if (size === undefined) return preferred;
  return Math.max(preferred, Math.ceil(size / MAX_PARTS / MiB) * MiB);
}

/**
 * Counts a streamed body and fails it at the end if `size` was given and is wrong: Upload then
 * aborts the multipart upload, so no truncated object is ever stored.
 */
function checkSize(what: string, size: number | undefined): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      done(null, chunk);
    },
    flush(done) {
      done(size !== undefined && seen !== size ? sizeMismatch(what, seen, size) : null);
    },
  });
}

function sizeMismatch(what: string, seen: number, size: number): Error {
  return storeFailed("s3", what, `the body had ${seen} bytes, but its size was given as ${size}`);
}

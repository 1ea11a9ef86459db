/**
 * Opens the object store a URL names:
 *
 *   file:///var/lib/kiln/objects   (or the bare absolute path)   a directory (fs-store.ts)
 *   s3://HOST[:PORT][?region=R&tls=false]                         an S3 server (s3-store.ts)
 *
 * The URL never holds secrets (it appears in logs and job records): S3 keys come from the
 * settings object or from KILN_S3_ACCESS_KEY / KILN_S3_SECRET_KEY. `tls` defaults to true;
 * scripts/s3-server.sh prints `?tls=false` for its loopback server. Anything missing or wrong
 * is a STORE_CONFIG error that names the setting and the variable that supplies it.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { FsStore, type FsStoreOptions } from "./fs-store.js";
import type { ObjectStore } from "./object-store.js";
import { S3Store, type S3StoreOptions } from "./s3-store.js";
import { storeConfigError } from "./store-errors.js";

export interface StoreSettings {
  /** S3 access key; default env KILN_S3_ACCESS_KEY. */
  accessKey?: string;
  /** S3 secret key; default env KILN_S3_SECRET_KEY. */
  secretKey?: string;
  /** S3 region; default the URL's `region`, env KILN_S3_REGION, then us-east-1 (RGW takes any). */
  region?: string;
  /** S3 multipart part size in bytes (≥ 5 MiB) and parts in flight; see S3StoreOptions. */
  partSize?: number;
  queueSize?: number;
  /** S3: how long a failing request is retried before it fails (seconds); see s3-retry.ts. */
  retrySeconds?: number;
  /** fs: where the service answers presigned URLs; default env KILN_STORE_PUBLIC_URL. */
  publicUrl?: string;
  /** fs: HMAC key for presigned URLs; default a key kept in the store's root. */
  signingKey?: string;
  /** Where the KILN_* variables are read; default process.env. */
  env?: Record<string, string | undefined>;
}

export type StoreTarget = { kind: "fs"; options: FsStoreOptions } | { kind: "s3"; options: S3StoreOptions };

const MiB = 1024 * 1024;
const S3_PARAMS = ["region", "tls"];

export async function openStore(url: string, settings: StoreSettings = {}): Promise<ObjectStore> {
  const target = resolveStore(url, settings);
  return target.kind === "fs" ? FsStore.open(target.options) : new S3Store(target.options);
}

/** Reads the URL and settings into a store's options, without touching disk or network. */
export function resolveStore(url: string, settings: StoreSettings = {}): StoreTarget {
  const env = settings.env ?? process.env;
  if (path.isAbsolute(url)) return { kind: "fs", options: fsOptions(path.resolve(url), settings, env) };
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw storeConfigError(undefined, `"${url}" is not a store URL: use file:///path/to/dir or s3://host[:port]`);
  }
  if (parsed.protocol === "file:") {
    if (parsed.search) throw storeConfigError("fs", `a file:// URL takes no parameters ("${parsed.search}")`);
    return { kind: "fs", options: fsOptions(fileURLToPath(parsed), settings, env) };
  }
  if (parsed.protocol === "s3:") return { kind: "s3", options: s3Options(parsed, settings, env) };
  throw storeConfigError(undefined, `"${parsed.protocol}" stores are not supported: use file:///path/to/dir or s3://host[:port]`);
}

function fsOptions(root: string, settings: StoreSettings, env: Record<string, string | undefined>): FsStoreOptions {
  const publicUrl = settings.publicUrl ?? env.KILN_STORE_PUBLIC_URL;
  if (publicUrl !== undefined && !/^https?:\/\/[^/]/.test(publicUrl)) {
    throw storeConfigError("fs", `"publicUrl" must be an http(s) URL, got "${publicUrl}"`, settings.publicUrl ? undefined : "KILN_STORE_PUBLIC_URL");
  }
  return { root, publicUrl, signingKey: settings.signingKey };
}

function s3Options(url: URL, settings: StoreSettings, env: Record<string, string | undefined>): S3StoreOptions {
  if (!url.hostname) throw storeConfigError("s3", "the URL names no server: s3://host[:port]");
  if (url.username || url.password) {
    throw storeConfigError("s3", "credentials do not belong in the store URL, which is logged: set KILN_S3_ACCESS_KEY and KILN_S3_SECRET_KEY");
  }
  if (url.pathname !== "" && url.pathname !== "/") {
    throw storeConfigError("s3", `the URL names a server, not a bucket or folder: drop "${url.pathname}" (Kiln uses the buckets ims and boot-images)`);
  }
  for (const name of url.searchParams.keys()) {
    if (!S3_PARAMS.includes(name)) throw storeConfigError("s3", `unknown URL parameter "${name}" (allowed: ${S3_PARAMS.join(", ")})`);
  }
  const tls = url.searchParams.get("tls") ?? "true";
  if (tls !== "true" && tls !== "false") throw storeConfigError("s3", `"tls" is true or false, got "${tls}"`);

  const accessKey = settings.accessKey ?? env.KILN_S3_ACCESS_KEY;
  if (!accessKey) throw storeConfigError("s3", '"access key" is required', "KILN_S3_ACCESS_KEY");
  const secretKey = settings.secretKey ?? env.KILN_S3_SECRET_KEY;
  if (!secretKey) throw storeConfigError("s3", '"secret key" is required', "KILN_S3_SECRET_KEY");
  const region = url.searchParams.get("region") ?? settings.region ?? env.KILN_S3_REGION ?? "us-east-1";
  if (settings.partSize !== undefined && !(Number.isInteger(settings.partSize) && settings.partSize >= 5 * MiB)) {
    throw storeConfigError("s3", `"partSize" must be at least 5 MiB (S3's smallest part), got ${settings.partSize}`);
  }
  if (settings.queueSize !== undefined && !(Number.isInteger(settings.queueSize) && settings.queueSize >= 1)) {
    throw storeConfigError("s3", `"queueSize" must be a whole number ≥ 1, got ${settings.queueSize}`);
  }
  return {
    endpoint: `${tls === "true" ? "https" : "http"}://${url.host}`,
    url: `s3://${url.host}${url.search}`,
    region,
    accessKey,
    secretKey,
    partSize: settings.partSize,
    queueSize: settings.queueSize,
    retrySeconds: settings.retrySeconds,
  };
}

/**
 * Names in a Kiln stream. maas-images uses `com.ubuntu.maas:<label>:v3:download` as content id and
 * `com.ubuntu.maas.<label>:v3:boot:<version>:<arch>:<psubarch>` as product names (meph2/stream.py;
 * docs/streams.md#names); Kiln keeps the shape with its own prefix, and the release codename where maas-images puts
 * the version number (MAAS reads neither from the name: it only matches `:v3:`).
 */
import { KilnError } from "../errors.js";

export const DEFAULT_PREFIX = "org.kiln";
export const LABELS = ["candidate", "stable"] as const;
export type Label = (typeof LABELS)[number];

export interface StreamNaming {
  /** Product name prefix before `.<label>`, e.g. org.kiln. */
  prefix: string;
  /** Content id of the image products; `{label}` is replaced. Default `<prefix>:{label}:v3:download`. */
  contentId?: string;
}

export function imageContentId(n: StreamNaming, label: string): string {
  return (n.contentId ?? `${n.prefix}:{label}:v3:download`).replaceAll("{label}", label);
}

export function bootloaderContentId(n: StreamNaming, label: string): string {
  return `${n.prefix}:${label}:1:bootloader-download`;
}

/**
 * The product-name part after the arch: the subarch, with a non-generic kernel flavor appended
 * before a trailing `-edge` (`hwe-24.04-lowlatency-edge`), as maas-images' `psubarch`.
 */
export function productSubarch(subarch: string, kflavor: string): string {
  if (kflavor === "generic" || kflavor === "") return subarch;
  const edge = subarch.endsWith("-edge");
  return `${edge ? subarch.slice(0, -"-edge".length) : subarch}-${kflavor}${edge ? "-edge" : ""}`;
}

export function imageProductName(n: StreamNaming, label: string, release: string, arch: string, subarch: string, kflavor: string): string {
  return `${n.prefix}.${label}:v3:boot:${release}:${arch}:${productSubarch(subarch, kflavor)}`;
}

export function bootloaderProductName(n: StreamNaming, label: string, os: string, platform: string, arch: string): string {
  return `${n.prefix}.${label}:1:${os}:${platform}:${arch}`;
}

/** Swaps the label in a product name made by this naming (`org.kiln.candidate:` → `org.kiln.stable:`). */
export function relabelProductName(n: StreamNaming, name: string, from: string, to: string): string {
  const head = `${n.prefix}.${from}:`;
  if (!name.startsWith(head)) throw new KilnError("INPUT_INVALID", `product ${name} does not start with ${head}; is --prefix right?`);
  return `${n.prefix}.${to}:${name.slice(head.length)}`;
}

const PREFIX_RE = /^[a-z0-9][a-z0-9.-]*[a-z0-9]$/;
const LABEL_RE = /^[a-z][a-z0-9-]*$/;

/** Checks --prefix, --content-id and --label; throws USAGE naming the option. */
export function checkNaming(n: StreamNaming, labels: string[]): void {
  if (!PREFIX_RE.test(n.prefix)) throw new KilnError("USAGE", `--prefix ${JSON.stringify(n.prefix)}: use lowercase letters, digits, "." and "-", e.g. ${DEFAULT_PREFIX}`);
  if (n.contentId !== undefined && !/^[A-Za-z0-9.{}:_-]+$/.test(n.contentId)) {
    throw new KilnError("USAGE", `--content-id ${JSON.stringify(n.contentId)}: use letters, digits, ".", ":", "-" and {label}, e.g. ${DEFAULT_PREFIX}:{label}:v3:download`);
  }
  for (const l of labels) {
    if (!LABEL_RE.test(l)) throw new KilnError("USAGE", `--label ${JSON.stringify(l)}: use a word such as candidate or stable`);
  }
}

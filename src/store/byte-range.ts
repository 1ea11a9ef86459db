/**
 * HTTP byte ranges (RFC 9110 §14), for everything that serves stored bytes over HTTP: the boot
 * test server (src/verify/http-server.ts) and presigned fs-store URLs (fs-presign.ts).
 */

/**
 * One `bytes=` range as [start, end] (inclusive), undefined to send the whole file (no header,
 * another unit, or several ranges, which RFC 9110 lets a server ignore), or "unsatisfiable".
 */
export function parseRange(header: string | undefined, size: number): [number, number] | "unsatisfiable" | undefined {
  const m = header?.match(/^bytes=(\d*)-(\d*)$/);
  if (!m) return undefined;
  const [, from, to] = m;
  if (from === "" && to === "") return undefined;
  if (from === "") {
    const suffix = Number(to); // bytes=-N: the last N bytes
    return suffix === 0 || size === 0 ? "unsatisfiable" : [Math.max(0, size - suffix), size - 1];
  }
  const start = Number(from);
  const end = to === "" ? size - 1 : Math.min(Number(to), size - 1);
  if (start >= size || end < start) return "unsatisfiable";
  return [start, end];
}

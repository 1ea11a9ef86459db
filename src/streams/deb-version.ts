/**
 * Debian version comparison, as dpkg does it (`verrevcmp` in dpkg's lib/dpkg/version.c, Debian
 * Policy §5.6.12): epoch numerically, then upstream version and revision, each compared in runs
 * of non-digits (letters before other characters, `~` before everything, even the end) and
 * digits (numerically).
 */

interface DebVersion {
  epoch: number;
  upstream: string;
  revision: string;
}

function parse(v: string): DebVersion {
  const colon = v.indexOf(":");
  const epoch = colon >= 0 ? Number(v.slice(0, colon)) : 0;
  const rest = colon >= 0 ? v.slice(colon + 1) : v;
  const dash = rest.lastIndexOf("-");
  return dash >= 0 ? { epoch, upstream: rest.slice(0, dash), revision: rest.slice(dash + 1) } : { epoch, upstream: rest, revision: "" };
}

const isDigit = (c: string | undefined) => c !== undefined && c >= "0" && c <= "9";

function order(c: string | undefined): number {
  if (c === undefined || isDigit(c)) return 0;
  if (/[A-Za-z]/.test(c)) return c.charCodeAt(0);
  if (c === "~") return -1;
  return c.charCodeAt(0) + 256;
}

function verrevcmp(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    let firstDiff = 0;
    while ((i < a.length && !isDigit(a[i])) || (j < b.length && !isDigit(b[j]))) {
      const ac = order(a[i]);
      const bc = order(b[j]);
      if (ac !== bc) return ac - bc;
      i++;
      j++;
    }
    while (a[i] === "0") i++;
    while (b[j] === "0") j++;
    while (isDigit(a[i]) && isDigit(b[j])) {
      if (!firstDiff) firstDiff = a.charCodeAt(i) - b.charCodeAt(j);
      i++;
      j++;
    }
    if (isDigit(a[i])) return 1;
    if (isDigit(b[j])) return -1;
    if (firstDiff) return firstDiff;
  }
  return 0;
}

/** < 0 when a is older than b, 0 when equal, > 0 when newer. */
export function compareDebVersions(a: string, b: string): number {
  const pa = parse(a);
  const pb = parse(b);
  if (pa.epoch !== pb.epoch) return pa.epoch < pb.epoch ? -1 : 1;
  return Math.sign(verrevcmp(pa.upstream, pb.upstream) || verrevcmp(pa.revision, pb.revision));
}

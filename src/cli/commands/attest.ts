/**
 * `kiln attest verify OUT|IMAGE_ID`: check a build's signature, checksums and provenance, in an out
 * dir (src/attest/verify.ts) or of an image of the service (src/attest/verify-image.ts).
 */
import { lstat } from "node:fs/promises";
import { verifyImageAttestations } from "../../attest/verify-image.js";
import { IMAGE_ID } from "../../client/ims-client.js";
import { verifyAttestations, type AttestReport } from "../../attest/verify.js";
import type { CommandIo } from "../io.js";
import { clientOf } from "./ims.js";

export async function attestVerifyCommand(target: string, o: { keyring?: string; json: boolean; url?: string; token?: string }, io: CommandIo): Promise<number> {
  // A folder is an out dir even when its name looks like an id; a UUID that is none, an image of the service.
  const isDir = (await lstat(target).catch(() => undefined))?.isDirectory() ?? false;
  const report: AttestReport = !isDir && IMAGE_ID.test(target)
    ? await verifyImageAttestations(clientOf(o), target, { keyring: o.keyring, signal: io.signal })
    : await verifyAttestations(target, { keyring: o.keyring });
  const what = isDir || !IMAGE_ID.test(target) ? target : `image ${target}`;
  if (o.json) io.stdout.write(JSON.stringify(report, null, 2) + "\n");
  else {
    for (const f of report.findings) if (!f.ok) io.stdout.write(`FAIL ${f.message}\n`);
    const good = report.findings.filter((f) => f.ok).length;
    io.stdout.write(
      report.ok
        ? `${what}: ok (${good} checks${report.signed ? ", signature good" : ", not signed"})\n`
        : `${what}: ${report.findings.filter((f) => !f.ok).length} failures\n`,
    );
  }
  return report.ok ? 0 : 1;
}

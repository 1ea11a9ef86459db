/** `kiln attest verify OUT`: check an out dir's signature, checksums and provenance (src/attest/verify.ts). */
import { verifyAttestations } from "../../attest/verify.js";
import type { CommandIo } from "../io.js";

export async function attestVerifyCommand(out: string, o: { keyring?: string; json: boolean }, io: CommandIo): Promise<number> {
  const report = await verifyAttestations(out, { keyring: o.keyring });
  if (o.json) io.stdout.write(JSON.stringify(report, null, 2) + "\n");
  else {
    for (const f of report.findings) if (!f.ok) io.stdout.write(`FAIL ${f.message}\n`);
    const good = report.findings.filter((f) => f.ok).length;
    io.stdout.write(
      report.ok
        ? `${out}: ok (${good} checks${report.signed ? ", signature good" : ", not signed"})\n`
        : `${out}: ${report.findings.filter((f) => !f.ok).length} failures\n`,
    );
  }
  return report.ok ? 0 : 1;
}

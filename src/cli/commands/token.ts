/** `kiln token create|list|revoke`: API tokens in <data-dir>/tokens.json (see src/api/tokens.ts). */
import { createToken, listTokens, revokeToken, ROLES, type Role } from "../../api/tokens.js";
import { COMMAND_SETTINGS, resolveSettings } from "../../config/settings.js";
import { KilnError } from "../../errors.js";
import { secureDataDir } from "../../host/data-dir.js";
import type { CommandIo } from "../io.js";

export async function tokenCreateCommand(opts: Record<string, unknown>, io: CommandIo): Promise<number> {
  const { dataDir } = resolveSettings(COMMAND_SETTINGS.token, opts);
  const role = String(opts.role ?? "");
  if (!(ROLES as readonly string[]).includes(role)) throw new KilnError("USAGE", `--role ${JSON.stringify(role)}: use ${ROLES.join(" or ")}`);
  await secureDataDir(dataDir); // a first token may be what creates the data dir: 0700 from the start
  const { token, entry } = await createToken(dataDir, role as Role, typeof opts.name === "string" ? opts.name : "");
  if (opts.json) {
    io.stdout.write(JSON.stringify({ id: entry.id, role: entry.role, name: entry.name, created: entry.created, token }) + "\n");
    return 0;
  }
  io.stdout.write(`token ${entry.id}: role ${entry.role}${entry.name ? `, "${entry.name}"` : ""}, for the service with --data-dir ${dataDir}\n`);
  io.stdout.write(`use it as KILN_TOKEN or --token; it is shown only now (Kiln keeps its sha256):\n`);
  io.stdout.write(`${token}\n`);
  return 0;
}

export async function tokenListCommand(opts: Record<string, unknown>, io: CommandIo): Promise<number> {
  const { dataDir } = resolveSettings(COMMAND_SETTINGS.token, opts);
  const tokens = await listTokens(dataDir);
  if (opts.json) {
    io.stdout.write(JSON.stringify(tokens.map(({ sha256: _s, ...t }) => t), null, 2) + "\n");
    return 0;
  }
  if (tokens.length === 0) io.stdout.write(`no tokens in ${dataDir}\n`);
  for (const t of tokens) io.stdout.write(`${t.id}  ${t.role.padEnd(9)}  ${t.created}  ${t.name}\n`);
  return 0;
}

export async function tokenRevokeCommand(id: string, opts: Record<string, unknown>, io: CommandIo): Promise<number> {
  const { dataDir } = resolveSettings(COMMAND_SETTINGS.token, opts);
  if (!(await revokeToken(dataDir, id))) throw new KilnError("USAGE", `no token ${id} in ${dataDir}; kiln token list shows them`);
  io.stdout.write(`revoked ${id}\n`);
  return 0;
}

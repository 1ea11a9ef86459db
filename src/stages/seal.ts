/**
 * seal: make the root safe to boot on many machines and free of build-host details:
 *  - empty /etc/machine-id (each machine generates its own at first boot);
 *  - no SSH host keys (every machine would share them); where sshd is installed without
 *    cloud-init, a oneshot unit generates them at first boot;
 *  - no apt lists or caches, no host resolv.conf or hostname;
 *  - no build-time state: logs emptied, ldconfig's aux-cache, fontconfig and man-db caches,
 *    dpkg/debconf *-old backups, systemd's random seed removed (reproducible.ts, docs/reproducible.md);
 *  - proxies are never written by Kiln; a proxy setting found in apt's config is reported.
 */
import { lstat, readdir, readFile, rm, symlink, writeFile, mkdir } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { emptyAptState } from "../host/chroot.js";
import { resolveInRoot } from "../host/root-path.js";
import { z } from "zod";
import { removeBuildState } from "./reproducible.js";
import { defineLayerStage, type LayerContext } from "./stage.js";

const SSH_KEYGEN_UNIT = `[Unit]
Description=Generate SSH host keys (Kiln images ship none)
Before=ssh.service
ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target ssh.service
`;

export const seal = defineLayerStage({
  kind: "seal",
  summary: "Seal the root: no machine identity, host keys, apt lists or host settings",
  options: z.strictObject({}),
  // The root's last link; an import nothing is asked of is published as it came.
  plan: ({ unchangedImport }) => (unchangedImport ? [] : [{ options: {} }]),
  base: false,
  tools: [],
  async run(ctx) {
    const at = (p: string, followLast = false) => resolveInRoot(ctx.root, p, followLast);
    const isFile = async (p: string) => (await lstat(p).catch(() => undefined))?.isFile() ?? false;
    const exists = async (p: string) => (await lstat(p).catch(() => undefined)) !== undefined;

    const machineId = await at("/etc/machine-id");
    if (!(await exists(machineId)) || (await isFile(machineId))) {
      await writeFile(machineId, "");
      ctx.log.line("emptied /etc/machine-id");
    }
    const dbusId = await at("/var/lib/dbus/machine-id");
    if (await isFile(dbusId)) await rm(dbusId);

    const sshDir = await at("/etc/ssh", true);
    const hostKeys = (await readdir(sshDir).catch(() => [] as string[])).filter((n) => n.startsWith("ssh_host_"));
    for (const k of hostKeys) await rm(path.join(sshDir, k), { force: true });
    if (hostKeys.length) ctx.log.line(`removed SSH host keys: ${hostKeys.join(" ")}`);
    if ((await exists(await at("/usr/sbin/sshd"))) && !(await exists(await at("/usr/bin/cloud-init")))) {
      await installKeygenUnit(ctx);
    }

    // Every chroot session leaves these empty; an imported root never was in one.
    await emptyAptState(ctx.root);
    // Builds share a host archive dir, but apt run in a customize session downloads into the image.
    const archives = await at("/var/cache/apt/archives", true);
    const debs = (await readdir(archives).catch(() => [] as string[])).filter((n) => n.endsWith(".deb"));
    for (const n of debs) await rm(path.join(archives, n), { force: true });
    if (debs.length) ctx.log.line(`removed ${debs.length} downloaded packages from /var/cache/apt/archives`);
    for (const tmp of ["/tmp", "/var/tmp"]) {
      const dir = await at(tmp, true);
      for (const n of await readdir(dir).catch(() => [] as string[])) await rm(path.join(dir, n), { recursive: true, force: true });
    }

    const resolv = await at("/etc/resolv.conf");
    const hostResolv = await readFile("/etc/resolv.conf", "utf8").catch(() => undefined);
    if ((await isFile(resolv)) && hostResolv !== undefined && (await readFile(resolv, "utf8")) === hostResolv && hostResolv !== "") {
      await writeFile(resolv, "");
      ctx.log.line("emptied /etc/resolv.conf (it was the build host's)");
    }
    const hostname = await at("/etc/hostname");
    if ((await isFile(hostname)) && (await readFile(hostname, "utf8")).trim() === os.hostname()) {
      await writeFile(hostname, "localhost\n");
      ctx.log.line("reset /etc/hostname (it was the build host's)");
    }

    await removeBuildState(ctx.root, ctx.log);

    const aptConf = await at("/etc/apt/apt.conf.d", true);
    for (const n of await readdir(aptConf).catch(() => [] as string[])) {
      const text = await readFile(path.join(aptConf, n), "utf8").catch(() => "");
      if (/Acquire::\w+::Proxy/i.test(text)) ctx.log.line(`warning: /etc/apt/apt.conf.d/${n} sets an apt proxy; it ships in the image`);
    }
  },
});

async function installKeygenUnit(ctx: LayerContext): Promise<void> {
  const unitDir = await resolveInRoot(ctx.root, "/etc/systemd/system");
  await mkdir(unitDir, { recursive: true });
  await writeFile(path.join(unitDir, "kiln-ssh-keygen.service"), SSH_KEYGEN_UNIT);
  for (const wants of ["multi-user.target.wants", "ssh.service.wants"]) {
    await mkdir(path.join(unitDir, wants), { recursive: true });
    const link = path.join(unitDir, wants, "kiln-ssh-keygen.service");
    await rm(link, { force: true });
    await symlink("/etc/systemd/system/kiln-ssh-keygen.service", link);
  }
  ctx.log.line("installed kiln-ssh-keygen.service (host keys are generated at first boot)");
}

/**
 * config: the recipe's host profile (Airship's osconfig role, as data). Each setting goes where
 * the OS reads it:
 *   sysctl      /etc/sysctl.d/90-kiln.conf            systemd-sysctl, at boot
 *   limits      /etc/security/limits.d/90-kiln.conf   pam_limits, at login
 *   modules     /etc/modules-load.d/kiln.conf         systemd-modules-load, at boot
 *   blacklist   /etc/modprobe.d/kiln-blacklist.conf   modprobe (and the initramfs: kernel layers come later)
 *   groups, users (SSH keys, no password), sudo       groupadd/useradd in the image, ~/.ssh/authorized_keys,
 *                                                     /etc/sudoers.d/90-kiln-<user>
 *   permissions                                       chmod/chown in the image
 *   units       enable/disable/mask                   systemctl in the image (its symlinks in /etc)
 * The kernel command line, huge pages and AppArmor's switch are boot parameters (plan.ts,
 * kernelCmdline); DKMS modules are built in each kernel layer (kernel.ts).
 */
import { chmod, chown, lstat, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { KilnError } from "../errors.js";
import type { ChrootSession } from "../host/chroot.js";
import { mkdirInRoot, resolveInRoot } from "../host/root-path.js";
import { z } from "zod";
import { GroupSchema, LimitSchema, PermissionSchema, UserSchema, type Group, type Permission, type Recipe, type User } from "../recipe/schema.js";
import { resolveOwner } from "./image-accounts.js";
import { defineLayerStage, type LayerContext } from "./stage.js";

const ConfigOptions = z.strictObject({
  /** [name, value] in recipe order. */
  sysctl: z.array(z.tuple([z.string(), z.string()])),
  limits: z.array(LimitSchema),
  modules: z.array(z.string()),
  blacklist: z.array(z.string()),
  permissions: z.array(PermissionSchema),
  groups: z.array(GroupSchema),
  users: z.array(UserSchema),
  units: z.strictObject({ enable: z.array(z.string()), disable: z.array(z.string()), mask: z.array(z.string()) }),
});
export type ConfigOptions = z.output<typeof ConfigOptions>;

const HEADER = "# Written by Kiln from the recipe's config; rebuild the image to change it.\n";

export const config = defineLayerStage({
  kind: "config",
  summary: "Apply the host profile: sysctl, limits, modules, users, permissions, units",
  options: ConfigOptions,
  plan({ recipe }) {
    const o = configOptions(recipe);
    return o ? [{ options: o }] : [];
  },
  base: false,
  tools: ["chroot"],
  async run(ctx, o) {
    if (o.sysctl.length > 0) {
      await writeImageFile(ctx, "/etc/sysctl.d/90-kiln.conf", HEADER + o.sysctl.map(([k, v]) => `${k} = ${v}\n`).join(""));
    }
    if (o.limits.length > 0) {
      const lines = o.limits.map((l) => `${l.domain}\t${l.type}\t${l.item}\t${l.value}\n`);
      await writeImageFile(ctx, "/etc/security/limits.d/90-kiln.conf", HEADER + "# <domain>\t<type>\t<item>\t<value>\n" + lines.join(""));
    }
    if (o.modules.length > 0) await writeImageFile(ctx, "/etc/modules-load.d/kiln.conf", HEADER + o.modules.map((m) => `${m}\n`).join(""));
    if (o.blacklist.length > 0) {
      // blacklist stops loading by alias only; "install … /bin/false" also stops a dependency or an explicit modprobe.
      const lines = o.blacklist.map((m) => `blacklist ${m}\ninstall ${m} /bin/false\n`);
      await writeImageFile(ctx, "/etc/modprobe.d/kiln-blacklist.conf", HEADER + lines.join(""));
    }
    if (o.groups.length + o.users.length > 0) {
      const s = await ctx.chroot();
      for (const g of o.groups) await addGroup(ctx, s, g);
      for (const u of o.users) await addUser(ctx, s, u);
    }
    for (const [i, p] of o.permissions.entries()) await applyPermission(ctx, p, i);
    const u = o.units;
    if (u.enable.length + u.disable.length + u.mask.length > 0) {
      const s = await ctx.chroot();
      if ((await lstat(await resolveInRoot(ctx.root, "/usr/bin/systemctl")).catch(() => undefined)) === undefined) {
        throw new KilnError("STAGE_FAILED", "config.units: the image has no systemctl", { hint: "install systemd with packages, or remove config.units" });
      }
      for (const [verb, units] of [["enable", u.enable], ["disable", u.disable], ["mask", u.mask]] as const) {
        if (units.length > 0) await s.run(["systemctl", verb, ...units]);
      }
    }
  },
});

/** The config layer's options, or undefined when the profile changes no file in the root. */
function configOptions(r: Recipe): ConfigOptions | undefined {
  const c = r.config;
  const o: ConfigOptions = {
    sysctl: Object.entries(c.sysctl ?? {}).map(([key, value]) => [key, String(value)] as [string, string]),
    limits: c.limits ?? [],
    modules: c.modules ?? [],
    blacklist: c.blacklist ?? [],
    permissions: c.permissions ?? [],
    groups: c.groups ?? [],
    users: c.users ?? [],
    units: { enable: c.units?.enable ?? [], disable: c.units?.disable ?? [], mask: c.units?.mask ?? [] },
  };
  const count = o.sysctl.length + o.limits.length + o.modules.length + o.blacklist.length + o.permissions.length + o.groups.length + o.users.length + o.units.enable.length + o.units.disable.length + o.units.mask.length;
  return count > 0 ? o : undefined;
}

async function writeImageFile(ctx: LayerContext, imagePath: string, content: string, mode = 0o644): Promise<void> {
  await mkdirInRoot(ctx.root, path.posix.dirname(imagePath));
  const file = await resolveInRoot(ctx.root, imagePath);
  await writeFile(file, content);
  await chmod(file, mode);
  ctx.log.line(`wrote ${imagePath}`);
}

interface Account {
  uid: number;
  gid: number;
  home: string;
}

/** The image's own /etc/passwd or /etc/group, by name. */
async function readAccounts(root: string, file: "/etc/passwd" | "/etc/group"): Promise<Map<string, Account>> {
  const text = await readFile(await resolveInRoot(root, file), "utf8").catch(() => "");
  const map = new Map<string, Account>();
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f.length >= 3 && f[0]) map.set(f[0], { uid: Number(f[2]), gid: Number(f[3] ?? f[2]), home: f[5] ?? "" });
  }
  return map;
}

async function requireTool(ctx: LayerContext, tool: string, field: string): Promise<void> {
  if ((await lstat(await resolveInRoot(ctx.root, `/usr/sbin/${tool}`)).catch(() => undefined)) === undefined) {
    throw new KilnError("STAGE_FAILED", `${field}: the image has no ${tool}`, { hint: "install passwd with packages (Debian's minbase has it)" });
  }
}

async function addGroup(ctx: LayerContext, s: ChrootSession, g: Group): Promise<void> {
  const existing = (await readAccounts(ctx.root, "/etc/group")).get(g.name);
  if (existing) {
    if (g.gid !== undefined && existing.uid !== g.gid) {
      throw new KilnError("STAGE_FAILED", `config.groups: group ${g.name} already exists in the image with gid ${existing.uid}, not ${g.gid}`, { hint: "drop gid, or use another group name" });
    }
    ctx.log.line(`group ${g.name} exists (gid ${existing.uid})`);
    return;
  }
  await requireTool(ctx, "groupadd", "config.groups");
  await s.run(["groupadd", ...(g.gid !== undefined ? ["--gid", String(g.gid)] : []), ...(g.system ? ["--system"] : []), g.name]);
}

async function addUser(ctx: LayerContext, s: ChrootSession, u: User): Promise<void> {
  const groups = await readAccounts(ctx.root, "/etc/group");
  const missing = u.groups.filter((g) => !groups.has(g));
  if (missing.length > 0) {
    throw new KilnError("STAGE_FAILED", `config.users: ${u.name}: group ${missing.join(", ")} does not exist in the image`, {
      hint: "add it to config.groups, or install the package that creates it",
    });
  }
  const existing = (await readAccounts(ctx.root, "/etc/passwd")).get(u.name);
  if (existing) {
    ctx.log.line(`user ${u.name} exists (uid ${existing.uid}): adding groups and keys only`);
    if (u.groups.length > 0) await s.run(["usermod", "--append", "--groups", u.groups.join(","), u.name]);
  } else {
    await requireTool(ctx, "useradd", "config.users");
    const createHome = !u.system || u.home !== undefined || u.sshAuthorizedKeys.length > 0;
    // prettier-ignore
    await s.run(["useradd", "--shell", u.shell,
      ...(u.uid !== undefined ? ["--uid", String(u.uid)] : []),
      ...(u.system ? ["--system"] : []),
      ...(u.home !== undefined ? ["--home-dir", u.home] : []),
      createHome ? "--create-home" : "--no-create-home",
      ...(u.groups.length > 0 ? ["--groups", u.groups.join(",")] : []),
      // A group of the user's name becomes its primary group: made here, or taken when config.groups made it.
      ...(groups.has(u.name) ? ["--gid", u.name] : ["--user-group"]),
      u.name]);
  }
  const account = (await readAccounts(ctx.root, "/etc/passwd")).get(u.name);
  if (!account) throw new KilnError("STAGE_FAILED", `config.users: ${u.name} is not in the image's /etc/passwd after useradd`);
  if (u.sshAuthorizedKeys.length > 0) await writeAuthorizedKeys(ctx, u, account);
  if (u.sudo) {
    await writeImageFile(ctx, `/etc/sudoers.d/90-kiln-${u.name}`, `${HEADER}${u.name} ALL=(ALL:ALL) NOPASSWD: ALL\n`, 0o440);
    if ((await lstat(await resolveInRoot(ctx.root, "/usr/bin/sudo")).catch(() => undefined)) === undefined) {
      ctx.log.line(`warning: config.users: ${u.name} has sudo: true, but the image has no sudo; install it with packages`);
    }
  }
}

async function writeAuthorizedKeys(ctx: LayerContext, u: User, account: Account): Promise<void> {
  if (!account.home.startsWith("/") || account.home === "/") {
    throw new KilnError("STAGE_FAILED", `config.users: ${u.name} has no home directory for its SSH keys (${account.home || "none"})`, { hint: "give the user a home" });
  }
  const sshDir = await mkdirInRoot(ctx.root, `${account.home}/.ssh`);
  await chmod(sshDir, 0o700);
  await chown(sshDir, account.uid, account.gid);
  const file = path.join(sshDir, "authorized_keys");
  const present = (await readFile(file, "utf8").catch(() => "")).split("\n").filter((l) => l.trim() !== "");
  const keys = [...present, ...u.sshAuthorizedKeys.filter((k) => !present.includes(k))];
  await writeFile(file, keys.join("\n") + "\n");
  await chmod(file, 0o600);
  await chown(file, account.uid, account.gid);
  ctx.log.line(`wrote ${account.home}/.ssh/authorized_keys (${u.sshAuthorizedKeys.length} keys for ${u.name})`);
}

async function applyPermission(ctx: LayerContext, p: Permission, i: number): Promise<void> {
  const field = `config.permissions[${i}]`;
  const target = await resolveInRoot(ctx.root, p.path);
  const st = await lstat(target).catch(() => undefined);
  if (st === undefined) {
    if (!p.directory) throw new KilnError("STAGE_FAILED", `${field}: ${p.path} does not exist in the image`, { hint: "create it (files, a script, a package), or set directory: true" });
    await mkdir(target, { recursive: true, mode: 0o755 });
  } else if (p.directory && !st.isDirectory()) {
    throw new KilnError("STAGE_FAILED", `${field}: ${p.path} exists and is not a directory`);
  }
  if (p.owner !== undefined) {
    let ids;
    try {
      ids = await resolveOwner(ctx.root, p.owner);
    } catch (e) {
      throw new KilnError("STAGE_FAILED", `${field}.owner: ${(e as Error).message}`);
    }
    await chown(target, ids.uid, ids.gid);
  }
  if (p.mode !== undefined) await chmod(target, parseInt(p.mode, 8));
  ctx.log.line(`${p.path}: ${[p.mode, p.owner].filter(Boolean).join(" ") || "created"}`);
}

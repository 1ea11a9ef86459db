/**
 * Host tools Kiln drives, the Debian package each comes from, and their versions. A tool's
 * version is part of the cache key of every stage that uses it (a new mksquashfs may pack
 * differently), and a missing tool is reported with the package to install.
 */
import { access, constants } from "node:fs/promises";
import { capture } from "./exec.js";
import { KilnError } from "../errors.js";

export const TOOL_PACKAGES = {
  mmdebstrap: "mmdebstrap",
  mksquashfs: "squashfs-tools",
  unsquashfs: "squashfs-tools",
  "qemu-img": "qemu-utils",
  "qemu-system-x86_64": "qemu-system-x86",
  tar: "tar",
  zstd: "zstd",
  sfdisk: "fdisk",
  "dpkg-query": "dpkg",
  chroot: "coreutils",
  // customize sessions: namespaces and mounts, the PTY, the jail's init and entry (see jail.ts)
  unshare: "util-linux",
  mount: "mount",
  script: "bsdutils",
  stty: "coreutils",
  perl: "perl-base",
} as const;

export type Tool = keyof typeof TOOL_PACKAGES;
export type ToolVersions = Partial<Record<Tool, string>>;

const SEARCH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

export async function findTool(tool: string): Promise<string | undefined> {
  for (const dir of SEARCH) {
    const p = `${dir}/${tool}`;
    try {
      await access(p, constants.X_OK);
      return p;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

/** Checks the tools are installed and returns their package versions (one dpkg-query call). */
export async function toolVersions(tools: readonly Tool[]): Promise<ToolVersions> {
  const missing: Tool[] = [];
  for (const t of new Set(tools)) if (!(await findTool(t))) missing.push(t);
  if (missing.length > 0) {
    const pkgs = [...new Set(missing.map((t) => TOOL_PACKAGES[t]))];
    throw new KilnError("TOOL_MISSING", `missing host tools: ${missing.join(", ")}`, {
      hint: `install them with: apt-get install ${pkgs.join(" ")}`,
    });
  }
  const pkgs = [...new Set(tools.map((t) => TOOL_PACKAGES[t]))];
  const out = await capture(["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", ...pkgs]).catch(() => "");
  const byPkg = new Map(out.split("\n").map((l) => l.split(" ") as [string, string]));
  const versions: ToolVersions = {};
  for (const t of tools) versions[t] = byPkg.get(TOOL_PACKAGES[t]) ?? "unknown";
  return versions;
}

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
  du: "coreutils",
  "mkfs.ext4": "e2fsprogs",
  "mkfs.vfat": "dosfstools",
  mcopy: "mtools",
  "grub-mkimage": "grub-common",
  xorriso: "xorriso",
  "ansible-playbook": "ansible-core",
  // customize sessions: namespaces and mounts, the PTY, the jail's init and entry (see jail.ts)
  unshare: "util-linux",
  mount: "mount",
  script: "bsdutils",
  stty: "coreutils",
  perl: "perl-base",
  // Boot loader files, not programs: a "tool" here is a file the package installs (see TOOL_FILES).
  "grub-pc-bin": "grub-pc-bin",
  "grub-efi-amd64-signed": "grub-efi-amd64-signed",
  "shim-signed": "shim-signed",
} as const;

/** Tools that are files a package installs rather than programs on the PATH. */
const TOOL_FILES: Partial<Record<keyof typeof TOOL_PACKAGES, string>> = {
  "grub-pc-bin": "/usr/lib/grub/i386-pc/boot.img",
  "grub-efi-amd64-signed": "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
  "shim-signed": "/usr/lib/shim/shimx64.efi.signed",
};

export type Tool = keyof typeof TOOL_PACKAGES;
export type ToolVersions = Partial<Record<Tool, string>>;

const SEARCH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

export async function findTool(tool: string): Promise<string | undefined> {
  const file = TOOL_FILES[tool as Tool];
  if (file !== undefined) return access(file, constants.R_OK).then(() => file, () => undefined);
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

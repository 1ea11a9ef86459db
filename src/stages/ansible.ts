/**
 * ansible: run the recipe's playbooks against the image, as Airship image-builder's osconfig role
 * does: Debian's ansible-playbook, the chroot connection, and the image as the only host of the
 * inventory (`-i '/mnt/image,'`, so playbooks say `hosts: all`).
 *
 * The controller does not run on the build host: a playbook is a recipe's code, and the
 * controller evaluates lookups and `delegate_to: localhost` tasks itself. It runs in a tool jail
 * (host/tool-jail.ts): the host's programs read-only, the playbook's folder read-only at
 * /recipe/<n>, the image at /mnt/image, nothing else of the host, and the modules it sends into
 * the image run in that jail too (chroot needs CAP_SYS_CHROOT, the one capability added).
 *
 * The stage opens a chroot session first, so the image has DNS, the apt cache and a policy-rc.d
 * that keeps daemons from starting, exactly as for scripts. Ansible's own scratch files stay out
 * of the layer: the remote tmp is the image's /tmp (the session's tmpfs) and the controller's home
 * is the jail's /tmp. The playbook's output goes to the stage log.
 */
import { lstat, mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { treeDigest } from "../cache/tree-digest.js";
import { KilnError } from "../errors.js";
import { resolveInRoot } from "../host/root-path.js";
import { openToolJail } from "../host/tool-jail.js";
import { defineLayerStage } from "./stage.js";

export interface AnsibleOptions {
  plays: Array<{ playbook: string; vars: Record<string, unknown> }>;
}

/** Folders beside a playbook that Ansible reads from (roles, includes, templates …): part of the key. */
export const PLAYBOOK_FOLDERS = [
  "ansible.cfg", "roles", "tasks", "handlers", "templates", "files", "vars", "defaults",
  "group_vars", "host_vars", "library", "module_utils", "filter_plugins", "collections",
];

/** CAP_SYS_CHROOT (linux/capability.h): the chroot connection's one need beyond the jail's set. */
const SYS_CHROOT = 18;

export const ansible = defineLayerStage<AnsibleOptions>({
  kind: "ansible",
  summary: "Run the recipe's Ansible playbooks against the image (chroot connection, controller jailed)",
  base: false,
  tools: ["ansible-playbook", "chroot"],
  async run(ctx, o) {
    await ctx.chroot(); // DNS, the apt cache, policy-rc.d, /tmp and /run in the image, as for scripts
    if ((await lstat(await resolveInRoot(ctx.root, "/usr/bin/python3")).catch(() => undefined)) === undefined) {
      throw new KilnError("STAGE_FAILED", "ansible: the image has no /usr/bin/python3, which Ansible's modules run with", {
        hint: "add python3 to packages (cloud-init brings it too)",
      });
    }
    const home = path.join(ctx.workDir, "ansible", ctx.name.replace(/[^a-z0-9-]/gi, "-"));
    const given = path.join(home, "in");
    await mkdir(given, { recursive: true });
    const folders = [...new Set(o.plays.map((p) => path.dirname(p.playbook)))];
    for (const [i, play] of o.plays.entries()) await writeFile(path.join(given, `vars-${i}.json`), JSON.stringify(play.vars));
    const jail = await openToolJail(ctx.root, {
      log: ctx.log,
      workDir: home,
      binds: [...folders.map((f, i) => ({ host: f, at: `/recipe/${i}` })), { host: given, at: "/kiln" }],
      extraCapabilities: { sys_chroot: SYS_CHROOT },
    });
    try {
      for (const [i, play] of o.plays.entries()) {
        const folder = `/recipe/${folders.indexOf(path.dirname(play.playbook))}`;
        ctx.log.line(`--- ansible-playbook ${play.playbook}`);
        // prettier-ignore
        const argv = ["ansible-playbook", "--connection", "chroot", "--inventory", "/mnt/image,",
                      "--extra-vars", `@/kiln/vars-${i}.json`, `${folder}/${path.basename(play.playbook)}`];
        // ansible.cfg beside the playbook applies: the jail's cwd is its folder (part of the key, see playbookFolderDigest).
        await ctx.exec(jail.command(argv, folder), {
          shownArgv: argv,
          cleanEnv: true,
          env: {
            ...ctx.env,
            PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            HOME: "/root",
            ANSIBLE_HOME: "/tmp/ansible",
            ANSIBLE_LOCAL_TEMP: "/tmp/ansible/tmp",
            ANSIBLE_REMOTE_TMP: "/tmp/.ansible-kiln",
            ANSIBLE_PYTHON_INTERPRETER: "/usr/bin/python3",
            ANSIBLE_RETRY_FILES_ENABLED: "0",
            ANSIBLE_NOCOLOR: "1",
            ANSIBLE_FORCE_COLOR: "0",
            PYTHONUNBUFFERED: "1",
            PYTHONDONTWRITEBYTECODE: "1",
            LC_ALL: "C.UTF-8",
            DEBIAN_FRONTEND: "noninteractive",
          },
        });
      }
    } finally {
      await jail.release();
    }
  },
});

/**
 * "sha256:…" over what Ansible may read beside a playbook (roles/, templates/ …; see
 * PLAYBOOK_FOLDERS): names, modes and contents (src/cache/tree-digest.ts), so editing a role
 * rebuilds the layer.
 */
export async function playbookFolderDigest(playbook: string): Promise<string> {
  return treeDigest(path.dirname(playbook), PLAYBOOK_FOLDERS);
}

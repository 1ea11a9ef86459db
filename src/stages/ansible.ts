/**
 * ansible: run the recipe's playbooks against the image, as Airship image-builder's osconfig role
 * does: ansible-playbook on the build host (Debian's ansible), the chroot connection, and the
 * image as the only host of the inventory (`-i '<root>,'`, so playbooks say `hosts: all`).
 *
 * The stage opens a chroot session first, so modules find /proc, /dev, DNS and a policy-rc.d
 * that keeps daemons from starting, exactly as scripts do. Ansible's own scratch files stay out
 * of the layer: the remote tmp is the session's /tmp (a tmpfs) and the controller's home is the
 * build's work dir. The playbook's output goes to the stage log.
 */
import { lstat, mkdir, writeFile } from "node:fs/promises";
import { treeDigest } from "../cache/tree-digest.js";
import path from "node:path";
import { KilnError } from "../errors.js";
import { resolveInRoot } from "../host/root-path.js";
import { z } from "zod";
import { defineLayerStage } from "./stage.js";

const AnsibleOptions = z.strictObject({ plays: z.array(z.strictObject({ playbook: z.string(), vars: z.record(z.string(), z.unknown()) })) });
export type AnsibleOptions = z.output<typeof AnsibleOptions>;

/** Folders beside a playbook that Ansible reads from (roles, includes, templates …): part of the key. */
export const PLAYBOOK_FOLDERS = [
  "ansible.cfg", "roles", "tasks", "handlers", "templates", "files", "vars", "defaults",
  "group_vars", "host_vars", "library", "module_utils", "filter_plugins", "collections",
];

export const ansible = defineLayerStage({
  kind: "ansible",
  summary: "Run the recipe's Ansible playbooks against the image (chroot connection)",
  options: AnsibleOptions,
  plan({ recipe: r, host, digestOf, ref }) {
    if (r.ansible.length === 0) return [];
    const inputs: Record<string, string> = {};
    const plays = r.ansible.map((a, i) => {
      inputs[`ansible[${i}].playbook`] = digestOf(a.playbook);
      inputs[`ansible[${i}].folder`] = host.playbookTrees?.[a.playbook] ?? "missing";
      return { playbook: ref(`ansible[${i}].playbook`, a.playbook), vars: a.vars };
    });
    return [{ options: { plays }, inputs }];
  },
  async hostFacts(r) {
    const playbookTrees: Record<string, string> = {};
    for (const a of r.ansible) playbookTrees[a.playbook] ??= await playbookFolderDigest(a.playbook);
    return { playbookTrees };
  },
  base: false,
  tools: ["ansible-playbook", "chroot"],
  async run(ctx, o) {
    await ctx.chroot(); // /proc, /dev, DNS and policy-rc.d for the modules, as for scripts
    if ((await lstat(await resolveInRoot(ctx.root, "/usr/bin/python3")).catch(() => undefined)) === undefined) {
      throw new KilnError("STAGE_FAILED", "ansible: the image has no /usr/bin/python3, which Ansible's modules run with", {
        hint: "add python3 to packages (cloud-init brings it too)",
      });
    }
    const home = path.join(ctx.workDir, "ansible", ctx.name.replace(/[^a-z0-9-]/gi, "-"));
    await mkdir(path.join(home, "tmp"), { recursive: true });
    for (const [i, play] of o.plays.entries()) {
      const vars = path.join(home, `vars-${i}.json`);
      await writeFile(vars, JSON.stringify(play.vars));
      ctx.log.line(`--- ansible-playbook ${play.playbook}`);
      // prettier-ignore
      await ctx.exec(["ansible-playbook", "--connection", "chroot", "--inventory", `${ctx.root},`,
                      "--extra-vars", `@${vars}`, play.playbook], {
        // ansible.cfg beside the playbook applies (it is part of the key, see playbookFolderDigest).
        cwd: path.dirname(play.playbook),
        env: {
          ...ctx.env,
          ANSIBLE_HOME: home,
          ANSIBLE_LOCAL_TEMP: path.join(home, "tmp"),
          ANSIBLE_REMOTE_TMP: "/tmp/.ansible-kiln",
          ANSIBLE_PYTHON_INTERPRETER: "/usr/bin/python3",
          ANSIBLE_RETRY_FILES_ENABLED: "0",
          ANSIBLE_NOCOLOR: "1",
          ANSIBLE_FORCE_COLOR: "0",
          PYTHONUNBUFFERED: "1",
          LC_ALL: "C.UTF-8",
          DEBIAN_FRONTEND: "noninteractive",
        },
      });
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

/**
 * iso: an ephemeral live ISO (Airship's ephemeral.iso): the build's squashfs booted live under a
 * tmpfs overlay, with the first flavor's kernel and initrd, from CD or USB, on BIOS or UEFI.
 *
 * The initrd is the flavor's own, unchanged: Kiln's initramfs hook (assets/initramfs, kiln-live)
 * understands root=live:UUID=<medium>, finds the medium, loop-mounts /live/filesystem.squashfs
 * from it and puts the same tmpfs overlay over it as for a diskless boot. No ISO-specific kernel
 * layer and no live-boot: the ISO costs seconds on top of the PXE bundle (see iso-image.ts).
 *
 * Reproducible (docs/reproducible.md): the medium id and the EFI image's volume id are derived
 * from the stage's key and the build's epoch; every date in the ISO is the epoch.
 */
import { copyFile, mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { efiBootFiles, EFI_FILES, writeFatImage } from "./boot/efi.js";
import { GRUB_I386_PC, liveGrubCfg, makeBiosCore } from "./boot/grub.js";
import { isoLabel, LIVE_FILES, masterIso } from "./live/iso-image.js";
import { z } from "zod";
import { derivedHex } from "./reproducible.js";
import { defineArtifactStage } from "./stage.js";

const IsoOptions = z.strictObject({
  name: z.string(),
  flavor: z.string(),
  /** Kernel command-line words after root=live:…. */
  cmdline: z.array(z.string()),
});
export type IsoOptions = z.output<typeof IsoOptions>;

export const ISO_FILE = "live.iso";

export const iso = defineArtifactStage({
  kind: "iso",
  summary: "Make a hybrid BIOS + UEFI live ISO of the squashfs, kernel and initrd",
  options: IsoOptions,
  facts: z.object({ label: z.string(), mediumId: z.string() }),
  // Built from files only (the squashfs and the first flavor's kernel and initrd), not on a layer.
  plan({ recipe: r, wants, cmdline, planned }) {
    const ga = planned("kernel")[0];
    const squashfs = planned("squashfs")[0] ?? planned("squashfs-copy")[0];
    if (!wants.has("iso") || !ga?.flavor || !squashfs) return [];
    const uses = {
      squashfs: { stage: squashfs, section: "artifacts" as const, file: "squashfs" },
      kernel: { stage: ga, section: "layers" as const, file: "boot-kernel" },
      initrd: { stage: ga, section: "layers" as const, file: "boot-initrd" },
    };
    const inputs = Object.fromEntries(Object.entries(uses).map(([n, u]) => [n, `stage:${u.stage.key}/${u.file}`]));
    return [{ options: { name: r.name, flavor: ga.flavor, cmdline }, inputs, uses, parent: null, flavor: ga.flavor }];
  },
  outputs: [{ file: ISO_FILE, artifact: "iso", output: "iso" }],
  tools: ["xorriso", "grub-mkimage", "mkfs.vfat", "mcopy", "grub-pc-bin", "grub-efi-amd64-signed", "shim-signed"],
  needsRoot: false,
  async run(ctx, o) {
    const work = await mkdtemp(path.join(ctx.workDir, "iso-"));
    try {
      const id = derivedHex(ctx.ids, "medium", 8).toLowerCase();
      const tree = path.join(work, "tree");
      const grub = path.join(tree, "boot/grub");
      await mkdir(path.join(grub, "i386-pc"), { recursive: true });
      await mkdir(path.join(tree, ".disk"), { recursive: true });
      await writeFile(path.join(tree, ".disk/info"), `Kiln live image ${o.name} (${o.flavor})\n`);
      await writeFile(path.join(tree, `.disk/kiln-${id}`), `${o.name}\n`);
      await writeFile(path.join(grub, "grub.cfg"), liveGrubCfg({ title: `${o.name} live (${o.flavor})`, idFile: `/.disk/kiln-${id}`, cmdline: o.cmdline }));
      for (const f of await readdir(GRUB_I386_PC)) {
        if (f.endsWith(".mod") || f.endsWith(".lst")) await copyFile(path.join(GRUB_I386_PC, f), path.join(grub, "i386-pc", f));
      }
      const early = `search --no-floppy --set=root --file /.disk/kiln-${id}\nset prefix=($root)/boot/grub\n`;
      await makeBiosCore(ctx.exec, { out: path.join(grub, "i386-pc/eltorito.img"), early, earlyFile: path.join(work, "early.cfg"), cdrom: true });

      const files = efiBootFiles(EFI_FILES.grubCd);
      let bytes = 0;
      for (const f of files) bytes += (await stat(f.from)).size;
      const efiImage = path.join(work, "efi.img");
      await writeFatImage(ctx.exec, {
        file: efiImage,
        sizeKiB: Math.ceil((bytes + 1024 * 1024) / 1024 / 1024) * 1024, // the files plus 1 MiB, in whole MiB
        label: "KILN_EFI",
        volumeId: derivedHex(ctx.ids, "efi-image", 4),
        invariant: ctx.ids !== undefined,
        dirs: ["/EFI", "/EFI/BOOT"],
        files,
      });

      await masterIso(ctx.exec, {
        out: path.join(ctx.outputs, ISO_FILE),
        label: isoLabel(o.name),
        tree,
        efiImage,
        grafts: { [LIVE_FILES.squashfs]: ctx.inputs.squashfs!, [LIVE_FILES.kernel]: ctx.inputs.kernel!, [LIVE_FILES.initrd]: ctx.inputs.initrd! },
        epoch: ctx.epoch,
      });
      Object.assign(ctx.facts, { label: isoLabel(o.name), mediumId: id });
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  },
});

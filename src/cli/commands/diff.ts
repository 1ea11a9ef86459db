/**
 * `kiln diff A B`: what changed between two out dirs or two image ids (src/diff/). Exits as
 * diff(1) does: 0 when nothing differs, 1 when something does, 2 for bad input.
 */
import type { Command } from "commander";
import type { CommandIo } from "../io.js";

export function registerDiffCommand(program: Command, io: CommandIo, setExit: (code: number) => void): void {
  program
    .command("diff")
    .description("Compare two builds (out dirs) or two images of the service: packages, kernels, artifact sizes, files")
    .argument("<a>", "an out dir, or an image id")
    .argument("<b>", "an out dir, or an image id")
    .option("--files", "for image ids: download each image's squashfs to compare its files too (out dirs always are)", false)
    .option("--url <url>", "Kiln service URL for image ids [env KILN_URL], e.g. http://127.0.0.1:8080")
    .option("--token <token>", "bearer token [env KILN_TOKEN]")
    .option("--json", "print the comparison as JSON", false)
    .addHelpText("after", "\nExit status: 0 the same, 1 they differ, 2 bad input.\n\nExamples:\n  kiln diff out-old out\n  kiln diff 3f1c…-image-a 9e2d…-image-b --files")
    .action(async (a: string, b: string, o: { files: boolean; url?: string; token?: string; json: boolean }) => {
      const { sideKind, outDirSnapshot, imageSnapshot } = await import("../../diff/sources.js");
      const { compareSnapshots, formatSnapshotDiff } = await import("../../diff/compare.js");
      const { clientOf } = await import("./ims.js");
      const read = async (arg: string) =>
        (await sideKind(arg)) === "out" ? outDirSnapshot(arg) : imageSnapshot(clientOf(o), arg, { files: o.files, signal: io.signal });
      const d = compareSnapshots(await read(a), await read(b));
      io.stdout.write(o.json ? JSON.stringify(d, null, 2) + "\n" : formatSnapshotDiff(d).join("\n") + "\n");
      setExit(d.identical ? 0 : 1);
    });
}

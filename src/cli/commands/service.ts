/**
 * The service's commands: `kiln serve`, `kiln worker`, `kiln token …` and the client `kiln ims …`.
 * Declared here (options from the settings table, examples); their code is imported when run.
 */
import { Command, Option } from "commander";
import { addSettingOptions, COMMAND_SETTINGS } from "../../config/settings.js";
import type { CommandIo } from "../io.js";

type Row = Record<string, unknown>;

function clientOptions(cmd: Command): Command {
  return cmd
    .option("--url <url>", "Kiln (or IMS) service URL [env KILN_URL], e.g. http://127.0.0.1:8080")
    .option("--token <token>", "bearer token [env KILN_TOKEN]")
    .option("--json", "print JSON instead of a table", false);
}

const LINK = (c: Command) => c.option("--link-path <s3path>", "s3://bucket/key").option("--link-type <type>", "s3").option("--link-etag <etag>", "the object's etag");

export function registerServiceCommands(program: Command, io: CommandIo, setExit: (code: number) => void): void {
  addSettingOptions(
    program
      .command("serve")
      .description("Run the image service: IMS API, catalog, queue and an in-process worker")
      .addHelpText("after", "\nExamples:\n  kiln serve\n  kiln serve --listen 0.0.0.0:8443 --tls-cert cert.pem --tls-key key.pem\n  kiln serve --database postgres://kiln:pw@db/kiln --store s3://rgw:7480 --no-worker"),
    COMMAND_SETTINGS.serve,
  ).action(async (o: Row) => {
    const { serveCommand } = await import("./serve.js");
    setExit(await serveCommand(o, io));
  });

  addSettingOptions(
    program
      .command("worker")
      .description("Run a worker that takes jobs from the service's queue (more build capacity)")
      .addHelpText("after", "\nExample:\n  kiln worker --database postgres://kiln:pw@db/kiln --store s3://rgw:7480 --concurrency 2"),
    COMMAND_SETTINGS.worker,
  ).action(async (o: Row) => {
    const { workerCommand } = await import("./serve.js");
    setExit(await workerCommand(o, io));
  });

  const token = program.command("token").description("API tokens of a service (kept in <data-dir>/tokens.json)");
  addSettingOptions(
    token
      .command("create")
      .description("Make a token; prints it as the last line (shown once)")
      .addOption(new Option("--role <role>", "what the token may do").choices(["admin", "read-only"]).makeOptionMandatory())
      .option("--name <name>", "a note on whom it is for")
      .option("--json", "print JSON", false)
      .addHelpText("after", "\nExample:\n  export KILN_TOKEN=$(kiln token create --role admin | tail -1)"),
    COMMAND_SETTINGS.token,
  ).action(async (o: Row) => {
    const { tokenCreateCommand } = await import("./token.js");
    setExit(await tokenCreateCommand(o, io));
  });
  addSettingOptions(token.command("list").description("List tokens (ids and roles, never secrets)").option("--json", "print JSON", false), COMMAND_SETTINGS.token).action(async (o: Row) => {
    const { tokenListCommand } = await import("./token.js");
    setExit(await tokenListCommand(o, io));
  });
  addSettingOptions(token.command("revoke").description("Revoke a token by id").argument("<id>"), COMMAND_SETTINGS.token).action(async (id: string, o: Row) => {
    const { tokenRevokeCommand } = await import("./token.js");
    setExit(await tokenRevokeCommand(id, o, io));
  });

  registerImsCommands(program, io, setExit);
}

function registerImsCommands(program: Command, io: CommandIo, setExit: (code: number) => void): void {
  const ims = program
    .command("ims")
    .description("Client of the IMS API, like `cray ims` (recipes, images, public-keys, jobs, deleted, remote-build-nodes)")
    .addHelpText("after", "\nExamples:\n  kiln ims recipes upload ./my-recipe/   # a folder with recipe.yaml\n  kiln ims jobs create --job-type create --artifact-id RID --public-key-id KID --image-root-archive-name web\n  kiln ims jobs wait JID\n  kiln ims images download IID --out ./img");
  const run = (resource: string, verb: string) => async (...args: unknown[]) => {
    const cmd = args[args.length - 1] as Command;
    const id = typeof args[0] === "string" ? args[0] : undefined;
    const { imsCommand } = await import("./ims.js");
    setExit(await imsCommand(resource, verb, id, cmd.opts(), io));
  };
  const standard = (group: Command, resource: string, verbs: string[]) => {
    if (verbs.includes("list")) clientOptions(group.command("list").description(`List ${resource}`)).action(run(resource, "list"));
    if (verbs.includes("describe")) clientOptions(group.command("describe").argument("<id>").description(`Show one of ${resource}`)).action(run(resource, "describe"));
    if (verbs.includes("delete")) clientOptions(group.command("delete").argument("<id>").description(resource.startsWith("deleted/") ? "Delete for good, with its objects" : "Delete (soft: see kiln ims deleted)")).action(run(resource, "delete"));
    if (verbs.includes("deleteall")) clientOptions(group.command("deleteall").description(resource.startsWith("deleted/") ? "Delete every one for good" : "Delete all")).action(run(resource, "deleteall"));
  };

  const recipes = ims.command("recipes").description("Recipes: kiln recipe archives (and IMS kiwi-ng records)");
  standard(recipes, "recipes", ["list", "describe", "delete", "deleteall"]);
  clientOptions(
    LINK(
      recipes
        .command("create")
        .description("Register a recipe record (upload does this and the archive in one go)")
        .requiredOption("--name <name>")
        .requiredOption("--recipe-type <type>", "kiln, kiwi-ng or packer")
        .requiredOption("--linux-distribution <distro>", "debian11, debian12, debian13, sles12, sles15, centos7")
        .option("--arch <arch>", "x86_64 or aarch64")
        .option("--require-dkms <bool>")
        .option("--template-dictionary-key <keys>", "comma list")
        .option("--template-dictionary-value <values>", "comma list"),
    ),
  ).action(run("recipes", "create"));
  clientOptions(
    LINK(
      recipes
        .command("update")
        .argument("<id>")
        .description("Change a recipe: link (once), arch, require-dkms, template dictionary")
        .option("--arch <arch>")
        .option("--require-dkms <bool>")
        .option("--template-dictionary-key <keys>", "comma list")
        .option("--template-dictionary-value <values>", "comma list"),
    ),
  ).action(run("recipes", "update"));
  clientOptions(
    recipes
      .command("upload")
      .argument("<dir>", "recipe folder: recipe.yaml and the files it references")
      .description("Pack a recipe folder, register it (recipe_type kiln) and upload its archive")
      .option("--name <name>", "record name (default: the recipe's name)")
      .option("--linux-distribution <distro>", "default: from base.debian (bookworm → debian12)")
      .option("--arch <arch>")
      .option("--require-dkms <bool>")
      .option("--template-dictionary-key <keys>", "comma list: values for recipe.yaml's {{ key }} placeholders")
      .option("--template-dictionary-value <values>", "comma list"),
  ).action(async (dir: string, _o: Row, cmd: Command) => {
    const { recipesUploadCommand } = await import("./ims.js");
    setExit(await recipesUploadCommand(dir, cmd.opts(), io));
  });

  const images = ims.command("images").description("Images: built (or imported) artifacts and their manifest");
  standard(images, "images", ["list", "describe", "delete", "deleteall"]);
  clientOptions(
    LINK(images.command("create").description("Register an image record").requiredOption("--name <name>").option("--arch <arch>").option("--metadata-key <key>").option("--metadata-value <value>")),
  ).action(run("images", "create"));
  clientOptions(
    LINK(
      images
        .command("update")
        .argument("<id>")
        .description("Change an image: link (once), arch, one metadata operation")
        .option("--arch <arch>")
        .option("--metadata-operation <op>", "set or remove")
        .option("--metadata-key <key>")
        .option("--metadata-value <value>"),
    ),
  ).action(run("images", "update"));
  clientOptions(images.command("download").argument("<id>").description("Download an image's artifacts and manifest.json, checking each md5").option("--out <dir>", "where to (default: ./<id>)")).action(
    async (id: string, _o: Row, cmd: Command) => {
      const { imagesDownloadCommand } = await import("./ims.js");
      setExit(await imagesDownloadCommand(id, cmd.opts(), io));
    },
  );
  clientOptions(
    images
      .command("urls")
      .argument("<id>")
      .description("Presigned download URLs of an image's artifacts and manifest.json: anyone with one may GET it, with no token, until it expires")
      .option("--expires <seconds>", "how long the URLs stay valid: 1 to 604800 (7 days)", "3600")
      .addHelpText("after", "\nExamples:\n  kiln ims images urls IID --expires 600\n  kiln ims images urls IID --json | jq -r '.artifacts[].url'"),
  ).action(async (id: string, _o: Row, cmd: Command) => {
    const { imagesUrlsCommand } = await import("./ims.js");
    setExit(await imagesUrlsCommand(id, cmd.opts(), io));
  });

  clientOptions(
    images
      .command("promote")
      .argument("<id>")
      .description("Move an image Kiln made to another simplestreams label (a successful job labels it candidate)")
      .requiredOption("--to <label>", "the label: candidate or stable")
      .addHelpText("after", "\nExamples:\n  kiln ims images promote IID --to stable"),
  ).action(async (id: string, _o: Row, cmd: Command) => {
    const { imagesPromoteCommand } = await import("./ims.js");
    setExit(await imagesPromoteCommand(id, cmd.opts(), io));
  });

  const keys = ims.command("public-keys").description("SSH public keys for job shells");
  standard(keys, "public-keys", ["list", "describe", "delete", "deleteall"]);
  clientOptions(keys.command("create").description("Add a public key").requiredOption("--name <name>").requiredOption("--public-key <file>", "file with the key (e.g. ~/.ssh/id_ed25519.pub)")).action(run("public-keys", "create"));

  const jobs = ims.command("jobs").description("Jobs: create (build an image from a recipe)");
  standard(jobs, "jobs", ["list", "describe", "delete"]);
  clientOptions(
    jobs
      .command("deleteall")
      .description("Delete jobs, all or those matching the filters")
      .option("--status <status...>", "job statuses (repeat or comma list)")
      .option("--job-type <type>")
      .option("--age <age>", "older than, e.g. 1d, 6h, 2w3d"),
  ).action(run("jobs", "deleteall"));
  clientOptions(
    jobs
      .command("create")
      .description("Start a job")
      .requiredOption("--job-type <type>", "create or customize")
      .requiredOption("--artifact-id <id>", "recipe id (create) or image id (customize)")
      .requiredOption("--public-key-id <id>")
      .requiredOption("--image-root-archive-name <name>", "name of the new image")
      .option("--kernel-file-name <name>")
      .option("--initrd-file-name <name>")
      .option("--kernel-parameters-file-name <name>")
      .option("--enable-debug <bool>")
      .option("--build-env-size <gib>")
      .option("--job-mem-size <gib>")
      .option("--require-dkms <bool>")
      .option("--ssh-containers-name <name>")
      .option("--ssh-containers-jail <bool>"),
  ).action(run("jobs", "create"));
  clientOptions(
    jobs
      .command("wait")
      .argument("<id>")
      .description("Follow a job with its log until it ends; exit 0 on success, 1 on error")
      .option("--no-log", "do not print the log")
      .option("--timeout <seconds>", "give up after this long"),
  ).action(async (id: string, _o: Row, cmd: Command) => {
    const { jobsWaitCommand } = await import("./ims.js");
    setExit(await jobsWaitCommand(id, cmd.opts(), io));
  });
  clientOptions(jobs.command("log").argument("<id>").description("Print a job's log (following it while it runs)").option("--no-follow", "only what is there now")).action(
    async (id: string, _o: Row, cmd: Command) => {
      const { jobsLogCommand } = await import("./ims.js");
      setExit(await jobsLogCommand(id, cmd.opts(), io));
    },
  );
  clientOptions(jobs.command("cancel").argument("<id>").description("Cancel a job")).action(async (id: string, _o: Row, cmd: Command) => {
    const { jobsCancelCommand } = await import("./ims.js");
    setExit(await jobsCancelCommand(id, cmd.opts(), io));
  });
  clientOptions(
    jobs
      .command("end-session")
      .argument("<id>")
      .description("End a job's SSH session as the complete marker does (a new image is made), or as failed with --failed")
      .option("--failed", "end it as failed: no image, the job ends error"),
  ).action(async (id: string, _o: Row, cmd: Command) => {
    const { jobsEndSessionCommand } = await import("./ims.js");
    setExit(await jobsEndSessionCommand(id, cmd.opts(), io));
  });

  // cray ims remote-build-nodes {list,describe,create,delete,deleteall} and status {list,describe}.
  // cray's `status describe` takes no xname (a spec bug, docs/architecture.md#ims-behaviour-kiln-follows); this one does.
  const nodes = ims.command("remote-build-nodes").description("IMS remote build nodes (records only: Kiln builds on `kiln worker` processes, never on these)");
  clientOptions(nodes.command("list").description("List remote build nodes")).action(run("remote-build-nodes", "list"));
  clientOptions(nodes.command("describe").argument("<xname>").description("Show one remote build node")).action(run("remote-build-nodes", "describe"));
  clientOptions(nodes.command("create").description("Register a remote build node").requiredOption("--xname <xname>", "the node's xname, e.g. x3000c1s10b1n0")).action(run("remote-build-nodes", "create"));
  clientOptions(nodes.command("delete").argument("<xname>").description("Delete a remote build node (for good)")).action(run("remote-build-nodes", "delete"));
  clientOptions(nodes.command("deleteall").description("Delete every remote build node")).action(run("remote-build-nodes", "deleteall"));
  const nodeStatus = nodes.command("status").description("What is known about the nodes: whether an SSH server answers on port 22; never able to run Kiln jobs");
  clientOptions(nodeStatus.command("list").description("Status of every remote build node")).action(run("remote-build-nodes/status", "list"));
  clientOptions(nodeStatus.command("describe").argument("<xname>").description("Status of one remote build node")).action(run("remote-build-nodes/status", "describe"));

  const deleted = ims.command("deleted").description("Soft-deleted records: list, restore, delete for good");
  for (const kind of ["recipes", "images", "public-keys"]) {
    const g = deleted.command(kind).description(`Deleted ${kind}`);
    standard(g, `deleted/${kind}`, ["list", "describe", "delete", "deleteall"]);
    clientOptions(g.command("update").argument("<id>").description("Restore (the only operation)").requiredOption("--operation <op>", "undelete")).action(run(`deleted/${kind}`, "update"));
    clientOptions(g.command("undelete").argument("<id>").description("Restore it (same as update --operation undelete)")).action(run(`deleted/${kind}`, "undelete"));
  }
}

/**
 * The recipe format, kiln/v1: one zod schema from which come the TypeScript types, the JSON Schema
 * (json-schema.ts), the reference page (docs.ts) and every error message a user sees (load.ts).
 *
 * Each schema says how it is spoken of in messages (`speak`), so a wrong value reads as
 * `"RT!" is not a flavor name; use lowercase letters, digits and "-", e.g. "rt"` and never as
 * zod's own text. Objects are strict: an unknown key is an error, not silently ignored.
 */
import { posix } from "node:path";
import { z } from "zod";

// ---------------------------------------------------------------------------------------------
// How values are spoken of in messages

/** What a message says about one kind of value. */
interface Spoken {
  /** Names the value after "expected" and "is not": "a flavor name". */
  noun: string;
  /** What is allowed, as advice: 'use lowercase letters, digits and "-"'. */
  rule?: string;
  /** One good value, written as in YAML: '"rt"', "[systemd, udev]". */
  example?: string;
  /** The whole message when the field is missing, if "required; give <noun>" is not enough. */
  required?: string;
}

type ErrorMap = z.core.$ZodErrorMap;

/** Describes a value for "got …": a YAML reader's words, not JavaScript's. */
export function kindOf(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "an empty value";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "string") return "a string";
  if (typeof value === "number") return `the number ${value}`;
  if (typeof value === "boolean") return `${value}`;
  if (typeof value === "object") return "a mapping";
  return typeof value;
}

/** Shows a wrong value inside a message: strings quoted, other things by kind. */
export function show(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : kindOf(value);
}

function advice(s: Spoken): string {
  const example = s.example === undefined ? [] : [`e.g. ${s.example}`];
  return [...(s.rule === undefined ? [] : [s.rule]), ...example].join(", ");
}

/** The message for an issue raised by a schema spoken of as `s`. */
function sayIssue(iss: z.core.$ZodRawIssue, s: Spoken): string | undefined {
  const tail = advice(s) ? `; ${advice(s)}` : "";
  if (iss.input === undefined && iss.code !== "custom") return s.required ?? `required; give ${s.noun}${s.example ? `, e.g. ${s.example}` : ""}`;
  switch (iss.code) {
    case "invalid_type":
      return `expected ${s.noun}, got ${kindOf(iss.input)}${tail}`;
    case "too_small":
      if (iss.origin === "array" || iss.origin === "string") return `must not be empty${tail}`;
      return `${show(iss.input)} is not ${s.noun}${tail}`;
    case "unrecognized_keys": // load.ts splits these per key and suggests the closest field
    case "invalid_union": // load.ts picks the branch the user meant
    case "custom": // refinements carry their own message
      return undefined;
    default:
      return `${show(iss.input)} is not ${s.noun}${tail}`;
  }
}

/** Schema params that make every issue the schema (and its checks) raises speak in terms of `s`. */
function speak(s: Spoken): { error: ErrorMap } {
  return { error: (iss) => sayIssue(iss, s) };
}

/** The fallback for any schema without its own words; passed to safeParse by load.ts. */
export const speakPlainly: ErrorMap = (iss) => {
  if (iss.code === "invalid_type") return sayIssue(iss, { noun: iss.expected === "array" ? "a list" : iss.expected === "object" ? "a mapping" : `a ${iss.expected}` });
  if (iss.code === "invalid_value") return sayIssue(iss, { noun: "allowed here", rule: `use ${iss.values.map((v) => JSON.stringify(v)).join(" or ")}` });
  return sayIssue(iss, { noun: "valid here" });
};

/** Refinements run even when sibling fields are invalid, so all problems are reported at once. */
const always = { when: () => true };

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------------------------------------
// Words: the small values recipes are made of

const RECIPE_NAME = /^[a-z0-9][a-z0-9.-]{0,62}$/;
const ENTRY_NAME = /^[a-z0-9][a-z0-9-]*$/;
const FLAVOR = /^[a-z][a-z0-9-]{0,31}$/;
const SUITE = /^[a-z0-9][a-z0-9.-]*$/;
// "/" for sections such as main/debian-installer.
const COMPONENT = /^[a-z0-9][a-z0-9./-]*$/;
const PACKAGE = /^[a-z0-9][a-z0-9+.-]+$/;
// Same suite words as SUITE, so "name/suite" and kernels[].suite agree.
const PACKAGE_SPEC = /^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+:~-]+|\/[a-z0-9.-]+)?$/;
const MODE = /^0?[0-7]{3,4}$/;
const OWNER = /^([a-z_][a-z0-9_.-]*|[0-9]+):([a-z_][a-z0-9_.-]*|[0-9]+)$/;
const CMDLINE_WORD = /^[^\s"'\\]+$/;

const LOWER_WORD = 'use lowercase letters, digits and "-"';

const suite = z
  .string(speak({ noun: "a suite name", rule: "use a Debian suite or codename", example: "bookworm" }))
  .regex(SUITE);

const components = z
  .array(
    z.string(speak({ noun: "an archive component", rule: "use a component name", example: "main" })).regex(COMPONENT),
    speak({ noun: "a list of archive components", example: "[main, contrib]" }),
  )
  .min(1);

function packageName(example: string) {
  return z.string(speak({ noun: "a package name", rule: 'use lowercase letters, digits, "+", "-" and "."', example })).regex(PACKAGE);
}

const packageSpec = z
  .string(speak({ noun: "a package name", rule: 'use a Debian package name, optionally as name=version or name/suite', example: '"openssh-server"' }))
  .regex(PACKAGE_SPEC);

/**
 * The one refusal for a path that leaves the recipe's folder: absolute, climbing out with "..", or
 * through a symbolic link (load.ts). The same words whatever is out there, so a recipe cannot ask
 * the build host which of its files exist.
 */
export function outsideFolder(written: string): string {
  return `${show(written)} is outside the recipe's folder; put the file in the recipe's folder and name it relative to it`;
}

/** Whether a path as written stays inside the folder it is relative to (no disk access; links are load.ts's). */
export function staysInside(written: string): boolean {
  if (written.startsWith("/")) return false;
  const normal = posix.normalize(written);
  return normal !== ".." && !normal.startsWith("../");
}

/**
 * A file inside the recipe's folder, named relative to it: recipes are built by a service as root,
 * so a path must not reach the build host's own files. load.ts resolves it (links too) and checks
 * it exists.
 */
function hostFile(noun: string, example: string) {
  return z
    .string(speak({ noun, example }))
    .min(1)
    .refine(staysInside, { error: (iss) => outsideFolder(String(iss.input)) });
}

function url(noun: string, protocol: RegExp, rule: string, example: string) {
  return z.url({ protocol, ...speak({ noun, rule, example }) });
}

/**
 * Fields a list may hold only once, such as kernel flavors; the duplicate gets the message.
 * `same` makes equal spellings one value ("/etc//motd" is "/etc/motd").
 */
function unique<T>(list: string, field: string, same: (v: string) => string = (v) => v) {
  return (items: T[], ctx: z.RefinementCtx<T[]>) => {
    if (!Array.isArray(items)) return;
    const first = new Map<string, number>();
    items.forEach((item, i) => {
      const value = isRecord(item) ? item[field] : undefined;
      if (typeof value !== "string") return;
      const seen = first.get(same(value));
      if (seen === undefined) first.set(same(value), i);
      else ctx.addIssue({ code: "custom", path: [i, field], message: `${JSON.stringify(value)} is already used by ${list}[${seen}]; give each its own ${field}` });
    });
  };
}

/** Objects that take one of two ways to give their content: a file's content or source, a script's run or source. */
function exactlyOne(a: string, b: string, example: string) {
  return (v: unknown, ctx: z.RefinementCtx<unknown>) => {
    if (!isRecord(v)) return;
    const given = [a, b].filter((k) => v[k] !== undefined);
    if (given.length === 2) ctx.addIssue({ code: "custom", path: [], message: `give ${a} or ${b}, not both; keep one` });
    if (given.length === 0) ctx.addIssue({ code: "custom", path: [], message: `give ${a} or ${b}; e.g. ${example}` });
  };
}

// ---------------------------------------------------------------------------------------------
// base

export const VARIANTS = ["minbase", "essential", "apt", "required", "important", "standard"] as const;
export const IMAGE_FORMATS = ["auto", "squashfs", "qcow2", "raw", "tar"] as const;

export const BaseDebianSchema = z
  .strictObject({
    debian: suite.describe("Debian suite or codename to bootstrap with mmdebstrap, e.g. bookworm."),
    variant: z
      .enum(VARIANTS, speak({ noun: "a bootstrap variant", rule: `use one of ${VARIANTS.join(", ")}` }))
      .default("minbase")
      .describe("mmdebstrap --variant: which packages the bare root starts with; minbase (the Essential set and apt) suits an image you fill with packages."),
    components: components.default(["main"]).describe("Archive components to enable, e.g. [main, contrib, non-free-firmware]."),
    mirror: url("an http(s) URL", /^https?$/, "use the URL of a Debian mirror", "http://deb.debian.org/debian")
      .optional()
      .describe("Debian mirror to bootstrap from. When left out, Kiln uses the Debian apt source configured on the build host."),
  })
  .describe("Bootstrap a fresh Debian root.");

export const BaseImageSchema = z
  .strictObject({
    image: hostFile("a path to an image file", "./cloud.squashfs").describe(
      "Existing image to start from: a file inside the recipe's folder, named relative to it.",
    ),
    format: z
      .enum(IMAGE_FORMATS, speak({ noun: "an image format", rule: `use one of ${IMAGE_FORMATS.join(", ")}` }))
      .default("auto")
      .describe("Format of the image; auto detects it from the file's contents."),
  })
  .describe("Import an existing root filesystem image (squashfs, qcow2, raw disk or tarball).");

const BASE_EXAMPLE = "{debian: bookworm} or {image: ./cloud.squashfs}";

/** Picks its words from the input: both keys, neither, or not a mapping at all (see load.ts for branch choice). */
const baseError: ErrorMap = (iss) => {
  if (iss.code !== "invalid_union" && iss.code !== "invalid_type") return undefined;
  const v = iss.input;
  if (v === undefined) return `required; give ${BASE_EXAMPLE}`;
  if (!isRecord(v)) return `expected a mapping, got ${kindOf(v)}; give ${BASE_EXAMPLE}`;
  if ("debian" in v && "image" in v) return "give debian or image, not both; a recipe either bootstraps Debian or imports an image";
  return `give debian (a suite to bootstrap) or image (a file to import); e.g. ${BASE_EXAMPLE}`;
};

// xor, not union: a union settles for the one option with only "soft" issues, so {debian, image,
// variant: bad} would read as "debian: unknown field"; xor reports every option and load.ts chooses.
export const BaseSchema = z.xor([BaseDebianSchema, BaseImageSchema], { error: baseError });

// ---------------------------------------------------------------------------------------------
// list entries

export const RepositorySchema = z
  .strictObject(
    {
      name: z
        .string(speak({ noun: "a repository name", rule: LOWER_WORD, example: '"backports"' }))
        .regex(ENTRY_NAME)
        .describe("Short name, unique in the recipe; names the apt source and preferences files."),
      uri: url("an http(s) or file URL", /^(https?|file)$/, "use the archive's base URL", "http://deb.debian.org/debian")
        .optional()
        .describe(
          "Archive base URL (http, https or file). Left out, the base's Debian mirror is used: right for suites of the same archive, such as bookworm-backports or bookworm-proposed-updates.",
        ),
      suite: suite.describe("Suite to use from this archive, e.g. bookworm-backports."),
      components: components.default(["main"]).describe("Components to enable from this archive."),
      pin: z
        .int(speak({ noun: "an apt pin priority", rule: "use a whole number from -1000 to 1001", example: "500" }))
        .min(-1000)
        .max(1001)
        .optional()
        .describe("apt pin priority for this archive; left out, apt's default applies (500, or 100 for backports)."),
      key: hostFile("a path to an OpenPGP key", "./archive-key.asc")
        .optional()
        .describe("OpenPGP key (ASCII-armored or binary) that signs this archive: a file inside the recipe's folder, named relative to it."),
    },
    speak({ noun: "a repository {name, suite, uri?}", example: "{name: backports, suite: bookworm-backports}" }),
  )
  .describe("An extra apt source, used while building.");

export const FileEntrySchema = z
  .strictObject(
    {
      path: z
        .string(speak({ noun: "an absolute path in the image", example: '"/etc/motd"' }))
        .regex(/^\//, { abort: true })
        .refine((p) => p !== "/" && !p.split("/").includes(".."), {
          error: (iss) => `${show(iss.input)} ${iss.input === "/" ? "is the image's root, not a file" : 'contains ".."'}; give a file's absolute path, e.g. "/etc/motd"`,
        })
        .describe("Absolute path of the file in the image; unique in the recipe."),
      content: z.string(speak({ noun: "text", example: '"managed by kiln\\n"' })).optional().describe("Text to write into the file."),
      source: hostFile("a path to a file", "./motd.txt").optional().describe("File to copy in: a file inside the recipe's folder, named relative to it."),
      mode: z
        .string(speak({ noun: "an octal mode in quotes", rule: "use 3 or 4 octal digits, quoted (YAML reads 0644 as the number 644)", example: '"0644"' }))
        .regex(MODE)
        .default("0644")
        .describe('Permission bits, octal, as a quoted string such as "0644" or "0755".'),
      owner: z
        .string(speak({ noun: 'an owner "user:group"', rule: "use user and group names or numbers", example: '"root:root"' }))
        .regex(OWNER)
        .default("root:root")
        .describe("Owner and group of the file, as user:group (names are looked up in the image)."),
    },
    speak({ noun: "a file {path, content or source}", example: '{path: /etc/motd, content: "hello\\n"}' }),
  )
  .superRefine(exactlyOne("content", "source", '{path: /etc/motd, content: "hello\\n"}'), always)
  .describe("A file to place in the image: give content or source, not both.");

export const ScriptSchema = z
  .strictObject(
    {
      name: z
        .string(speak({ noun: "a script name", rule: LOWER_WORD, example: '"enable-ssh"' }))
        .regex(ENTRY_NAME)
        .describe("Short name, unique in the recipe; names the script in logs."),
      run: z.string(speak({ noun: "shell commands", example: '"systemctl enable ssh"' })).optional().describe("Shell commands, run with /bin/sh -e inside the image root."),
      source: hostFile("a path to a script", "./tune.sh").optional().describe("Script file inside the recipe's folder (named relative to it), run with /bin/sh -e inside the image root."),
    },
    speak({ noun: "a script {name, run or source}", example: '{name: enable-ssh, run: "systemctl enable ssh"}' }),
  )
  .superRefine(exactlyOne("run", "source", '{name: enable-ssh, run: "systemctl enable ssh"}'), always)
  .describe("A script run as root inside the image (chroot) at build time: give run or source, not both.");

export const KernelSchema = z
  .strictObject(
    {
      flavor: z
        .string(speak({ noun: "a flavor name", rule: LOWER_WORD, example: '"rt"' }))
        .regex(FLAVOR)
        .describe("Name of this kernel in artifact names, e.g. generic, rt, cloud; unique in the recipe."),
      package: packageName('"linux-image-amd64"').describe("Debian package that provides the kernel, e.g. linux-image-amd64."),
      suite: suite.optional().describe("Install the package from this suite (e.g. bookworm-backports) instead of the default one."),
    },
    speak({ noun: "a kernel {flavor, package}", example: "{flavor: generic, package: linux-image-amd64}" }),
  )
  .describe("A kernel flavor: one layer over the finished root, giving one kernel and initrd.");

export const OUTPUT_KINDS = ["squashfs", "kernel", "initrd", "manifest", "tarball", "qcow2", "iso"] as const;
const DEFAULT_OUTPUTS: OutputKind[] = ["squashfs", "kernel", "initrd", "manifest"];

/** The zstd level when a recipe gives none: mksquashfs' own 15 takes minutes where 3 takes seconds. */
export const DEFAULT_ZSTD_LEVEL = 3;

export const SquashfsSchema = z
  .strictObject(
    {
      compression: z
        .enum(["zstd", "xz"], speak({ noun: "a squashfs compression", rule: "use zstd or xz" }))
        .default("zstd")
        .describe("zstd packs fast; xz packs smaller and much slower (for release channels)."),
      level: z
        .int(speak({ noun: "a zstd level", rule: "use 1 (fastest) to 22 (smallest)", example: "3" }))
        .min(1)
        .max(22)
        .optional()
        .describe(`zstd compression level, 1 to 22; ${DEFAULT_ZSTD_LEVEL} when left out (mksquashfs' own default of 15 is far slower). Not allowed with xz.`),
    },
    speak({ noun: "squashfs settings", example: "{compression: zstd, level: 3}" }),
  )
  .superRefine((v, ctx) => {
    if (isRecord(v) && v.compression === "xz" && v.level !== undefined)
      ctx.addIssue({ code: "custom", path: ["level"], message: "xz takes no level; remove level, or use compression: zstd" });
  }, always);

export const ProxySchema = z.strictObject(
  {
    http: url("a proxy URL", /^https?$/, "use an http(s) URL", "http://proxy.example:3128").optional().describe("Proxy for http:// downloads."),
    https: url("a proxy URL", /^https?$/, "use an http(s) URL", "http://proxy.example:3128").optional().describe("Proxy for https:// downloads."),
    noProxy: z
      .string(speak({ noun: "a list of hosts", example: '"localhost,.internal"' }))
      .optional()
      .describe("Comma-separated hosts and domains reached without the proxy, as in no_proxy."),
  },
  speak({ noun: "proxy settings", example: "{http: http://proxy.example:3128}" }),
);

// ---------------------------------------------------------------------------------------------
// config: the host profile (where each setting lands is said in its description)

// sysctl.d(5) names: dot- or slash-separated words; "*" for systemd's globs (net.ipv4.conf.*.rp_filter).
const SYSCTL_KEY = /^[a-z0-9_]+([./][A-Za-z0-9_*:@+-]+)+$/;
const SYSCTL_VALUE = /^[^\n\r#]*[^\s#][^\n\r#]*$/;
// modprobe's module names: no path, no ".ko".
const MODULE = /^[A-Za-z0-9_-]+$/;
const UNIT = /^[A-Za-z0-9@_.:\\-]+$/;
const USER = /^[a-z_][a-z0-9_-]{0,31}$/;
const LIMIT_DOMAIN = /^(\*|%|[@%]?[a-z_][a-z0-9_.-]*|[@%]?[0-9]*:[0-9]*)$/;
const SSH_KEY = /^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( [^\n\r]*)?$/;
const ABSOLUTE = /^\/[^\n\r]*$/;
const SIZE = /^[1-9][0-9]*[MGT]$/;

export const LIMIT_ITEMS = [
  "core", "data", "fsize", "memlock", "nofile", "rss", "stack", "cpu", "nproc", "as", "maxlogins",
  "maxsyslogins", "nonewprivs", "priority", "locks", "sigpending", "msgqueue", "nice", "rtprio",
] as const;
export const HUGEPAGE_SIZES = ["2M", "1G"] as const;
/** Fields a user entry never takes: passwords and their hashes never go into an image. */
const PASSWORD_FIELDS = ["password", "passwd", "hashed_passwd", "plain_text_passwd"] as const;

function cmdlineWords() {
  return z
    .array(
      z.string(speak({ noun: "a kernel command-line word", rule: "give one word per entry, without spaces or quotes", example: '"console=ttyS0"' })).regex(CMDLINE_WORD),
      speak({ noun: "a list of kernel command-line words", example: "[console=ttyS0, quiet]" }),
    );
}

function moduleList(example: string) {
  return z.array(
    z.string(speak({ noun: "a kernel module name", rule: 'use the name modprobe takes: letters, digits, "_" and "-", no path and no .ko', example })).regex(MODULE),
    speak({ noun: "a list of kernel module names", example: `[${example.replace(/"/g, "")}]` }),
  );
}

function unitList() {
  return z.array(
    z.string(speak({ noun: "a systemd unit name", rule: "use the unit's name, without a path", example: '"ssh.service"' })).regex(UNIT),
    speak({ noun: "a list of systemd unit names", example: "[ssh.service]" }),
  );
}

function absolutePath(noun: string, example: string) {
  return z
    .string(speak({ noun, example }))
    .regex(ABSOLUTE, { abort: true })
    .refine((p) => p !== "/" && !p.split("/").includes(".."), {
      error: (iss) => `${show(iss.input)} ${iss.input === "/" ? "is the image's root" : 'contains ".."'}; give an absolute path, e.g. ${example}`,
    });
}

function size(noun: string, example: string) {
  return z.string(speak({ noun, rule: "use a whole number of M, G or T (MiB, GiB, TiB)", example })).regex(SIZE);
}

const sysctlValue = z.union(
  [
    z.number(),
    z.string(speak({ noun: "a sysctl value", rule: "use one line of text without #", example: '"32768 60999"' })).regex(SYSCTL_VALUE),
  ],
  { error: (iss) => (iss.code === "invalid_union" ? `expected a sysctl value, got ${kindOf(iss.input)}; use a number or one line of text${typeof iss.input === "boolean" ? " (1 or 0, not true or false)" : ""}, e.g. 10` : undefined) },
);

const limitValue = speak({ noun: "a limit value", rule: "use a whole number, unlimited or infinity", example: "65536" });

export const LimitSchema = z.strictObject(
  {
    domain: z
      .string(speak({ noun: "a limits.conf domain", rule: 'use a user, @group, "*", or a uid/gid range such as 1000:', example: '"@ops"' }))
      .regex(LIMIT_DOMAIN)
      .describe('Who the limit applies to: a user name, @group, "*" for everyone, or a uid range like 1000:.'),
    type: z
      .enum(["soft", "hard", "-"], speak({ noun: "a limit type", rule: 'use soft, hard or "-" (both)' }))
      .default("-")
      .describe('soft, hard, or "-" for both.'),
    item: z
      .enum(LIMIT_ITEMS, speak({ noun: "a limits.conf item", rule: `use one of ${LIMIT_ITEMS.join(", ")}` }))
      .describe("The resource, as limits.conf(5) names it, e.g. nofile or memlock."),
    value: z
      .union([z.int(limitValue), z.enum(["unlimited", "infinity"], limitValue)], {
        error: (iss) => (iss.code === "invalid_union" ? `${show(iss.input)} is not a limit value; use a whole number, unlimited or infinity, e.g. 65536` : undefined),
      })
      .describe("A whole number, unlimited or infinity."),
  },
  speak({ noun: "a limit {domain, item, value}", example: '{domain: "*", item: nofile, value: 65536}' }),
);

export const HugepagesSchema = z.strictObject(
  {
    size: z
      .enum(HUGEPAGE_SIZES, speak({ noun: "a huge page size", rule: `use ${HUGEPAGE_SIZES.join(" or ")}` }))
      .default("2M")
      .describe("Page size: 2M or 1G."),
    count: z
      .int(speak({ noun: "a number of pages", rule: "use a whole number from 1", example: "512" }))
      .min(1)
      .describe("How many pages the kernel reserves at boot."),
  },
  speak({ noun: "huge pages {size, count}", example: "{size: 2M, count: 512}" }),
);

export const PermissionSchema = z
  .strictObject(
    {
      path: absolutePath("an absolute path in the image", '"/var/log/app"').describe("File or directory in the image."),
      mode: z
        .string(speak({ noun: "an octal mode in quotes", rule: "use 3 or 4 octal digits, quoted (YAML reads 0750 as the number 750)", example: '"0750"' }))
        .regex(MODE)
        .optional()
        .describe('Permission bits, octal, quoted: "0750".'),
      owner: z
        .string(speak({ noun: 'an owner "user:group"', rule: "use user and group names or numbers", example: '"root:adm"' }))
        .regex(OWNER)
        .optional()
        .describe("Owner and group as user:group, looked up in the image (after config.users and config.groups)."),
      directory: z
        .boolean(speak({ noun: "true or false" }))
        .default(false)
        .describe("Create the path as a directory when it does not exist (otherwise a missing path fails the build)."),
    },
    speak({ noun: "a permission {path, mode, owner}", example: '{path: /var/log/app, mode: "0750", owner: "root:adm"}' }),
  )
  .superRefine((v, ctx) => {
    if (isRecord(v) && v.mode === undefined && v.owner === undefined && v.directory !== true)
      ctx.addIssue({ code: "custom", path: [], message: "give mode or owner (or directory: true); e.g. {path: /var/log/app, mode: \"0750\"}" });
  }, always);

export const GroupSchema = z.strictObject(
  {
    name: z.string(speak({ noun: "a group name", rule: 'use lowercase letters, digits, "_" and "-" (at most 32)', example: '"ops"' })).regex(USER).describe("Group name."),
    gid: z.int(speak({ noun: "a group id", rule: "use a whole number from 0", example: "2000" })).min(0).max(2 ** 31 - 1).optional().describe("Numeric id; the next free one when left out."),
    system: z.boolean(speak({ noun: "true or false" })).default(false).describe("A system group (id below 1000)."),
  },
  speak({ noun: "a group {name}", example: "{name: ops}" }),
);

const passwordNever = z
  .never({ error: () => "passwords are never written into an image; give sshAuthorizedKeys, and set passwords per machine at deploy time (cloud-init), if at all" })
  .optional()
  .describe("Not allowed: Kiln images carry no passwords (use sshAuthorizedKeys).");

export const UserSchema = z.strictObject(
  {
    name: z.string(speak({ noun: "a user name", rule: 'use lowercase letters, digits, "_" and "-" (at most 32)', example: '"ops"' })).regex(USER).describe("Login name. An existing user (root, say) only gets its keys and groups."),
    uid: z.int(speak({ noun: "a user id", rule: "use a whole number from 0", example: "2000" })).min(0).max(2 ** 31 - 1).optional().describe("Numeric id; the next free one when left out."),
    groups: z
      .array(z.string(speak({ noun: "a group name", example: '"sudo"' })).regex(USER), speak({ noun: "a list of group names", example: "[sudo, adm]" }))
      .default([])
      .describe("Supplementary groups; each must exist in the image or in config.groups."),
    shell: absolutePath("a shell path", '"/bin/bash"').default("/bin/bash").describe("Login shell."),
    home: absolutePath("a home directory", '"/home/ops"').optional().describe("Home directory; /home/<name> when left out."),
    system: z.boolean(speak({ noun: "true or false" })).default(false).describe("A system account (id below 1000, no home unless given)."),
    sshAuthorizedKeys: z
      .array(
        z.string(speak({ noun: "an SSH public key", rule: "use one line as in authorized_keys: type, base64 key, optional comment", example: '"ssh-ed25519 AAAAC3Nza... ops@example"' })).regex(SSH_KEY),
        speak({ noun: "a list of SSH public keys", example: '["ssh-ed25519 AAAA... ops@example"]' }),
      )
      .default([])
      .describe("Public keys written to ~/.ssh/authorized_keys (mode 0600). The only way in: the account has no password."),
    sudo: z.boolean(speak({ noun: "true or false" })).default(false).describe("Let the user run any command with sudo, without a password (/etc/sudoers.d/90-kiln-<name>); install sudo with packages."),
    ...Object.fromEntries(PASSWORD_FIELDS.map((f) => [f, passwordNever])),
  },
  speak({ noun: "a user {name, sshAuthorizedKeys}", example: '{name: ops, sshAuthorizedKeys: ["ssh-ed25519 AAAA... ops@example"]}' }),
);

export const UnitsSchema = z.strictObject(
  {
    enable: unitList().default([]).describe("Units to enable (systemctl enable in the image)."),
    disable: unitList().default([]).describe("Units to disable (systemctl disable)."),
    mask: unitList().default([]).describe("Units to mask, so nothing can start them (systemctl mask)."),
  },
  speak({ noun: "units {enable, disable, mask}", example: "{enable: [ssh.service], disable: [apt-daily.timer]}" }),
);

/** Values that must not repeat across lists of one mapping (a module both loaded and blacklisted). */
function disjoint(lists: string[], what: string) {
  return (v: unknown, ctx: z.RefinementCtx<unknown>) => {
    if (!isRecord(v)) return;
    const seen = new Map<string, string>();
    for (const list of lists) {
      const items = v[list];
      if (!Array.isArray(items)) continue;
      items.forEach((item, i) => {
        if (typeof item !== "string") return;
        const first = seen.get(item);
        if (first !== undefined && first !== list) ctx.addIssue({ code: "custom", path: [list, i], message: `${JSON.stringify(item)} is also in ${first}; a ${what} can be in only one of ${lists.join(", ")}` });
        else seen.set(item, list);
      });
    }
  };
}

export const ConfigSchema = z
  .strictObject(
    {
      cmdline: cmdlineWords()
        .optional()
        .describe("Kernel command-line words: written to each flavor's boot-params, the disk's and the ISO's GRUB menu. Added after the top-level cmdline."),
      sysctl: z
        .record(
          z.string(speak({ noun: "a sysctl name", rule: 'use dotted words as sysctl -a prints them, without "=" or spaces', example: '"vm.swappiness"' })).regex(SYSCTL_KEY),
          sysctlValue,
          { error: (iss) => (iss.code === "invalid_key" ? `${show(iss.input)} is not a sysctl name; use dotted words as sysctl -a prints them, without "=" or spaces, e.g. vm.swappiness` : iss.code === "invalid_type" ? `expected a mapping of sysctl names to values, got ${kindOf(iss.input)}; e.g. {vm.swappiness: 10}` : undefined) },
        )
        .optional()
        .describe("Kernel parameters, written to /etc/sysctl.d/90-kiln.conf (systemd-sysctl applies them at boot)."),
      limits: z
        .array(LimitSchema, speak({ noun: "a list of limits", example: '[{domain: "*", item: nofile, value: 65536}]' }))
        .optional()
        .describe("Resource limits {domain, type, item, value}, written to /etc/security/limits.d/90-kiln.conf (pam_limits)."),
      modules: moduleList('"br_netfilter"').optional().describe("Kernel modules to load at boot, written to /etc/modules-load.d/kiln.conf."),
      blacklist: moduleList('"floppy"')
        .optional()
        .describe("Kernel modules never to load, written to /etc/modprobe.d/kiln-blacklist.conf (blacklist, and install /bin/false so a dependency cannot pull them in); the initramfs honours it too."),
      hugepages: z
        .array(HugepagesSchema, speak({ noun: "a list of huge page pools", example: "[{size: 2M, count: 512}]" }))
        .superRefine(unique("hugepages", "size"), always)
        .optional()
        .describe("Huge pages {size, count}, reserved at boot on the kernel command line (hugepagesz=, hugepages=; the first size becomes default_hugepagesz). For pages reserved later, set vm.nr_hugepages in sysctl."),
      permissions: z
        .array(PermissionSchema, speak({ noun: "a list of permissions", example: '[{path: /var/log/app, mode: "0750"}]' }))
        .optional()
        .describe("Modes and owners of files and directories already in the image {path, mode, owner, directory}."),
      groups: z
        .array(GroupSchema, speak({ noun: "a list of groups", example: "[{name: ops}]" }))
        .superRefine(unique("groups", "name"), always)
        .optional()
        .describe("Groups to create {name, gid, system} (groupadd in the image)."),
      users: z
        .array(UserSchema, speak({ noun: "a list of users", example: '[{name: ops, sshAuthorizedKeys: ["ssh-ed25519 AAAA..."]}]' }))
        .superRefine(unique("users", "name"), always)
        .optional()
        .describe(
          "Users to create {name, uid, groups, shell, home, system, sshAuthorizedKeys, sudo} (useradd in the image), with SSH keys and no password: a password field is an error.",
        ),
      units: UnitsSchema.superRefine(disjoint(["enable", "disable", "mask"], "unit"), always)
        .optional()
        .describe("systemd units to enable, disable or mask, as systemctl does in the image (symlinks under /etc/systemd/system)."),
      apparmor: z
        .boolean(speak({ noun: "true or false" }))
        .optional()
        .describe("true: install apparmor and boot with apparmor=1 security=apparmor; false: boot with apparmor=0. Left out, the kernel's default applies."),
      dkms: z
        .array(packageName('"acpi-call-dkms"'), speak({ noun: "a list of DKMS package names", example: "[acpi-call-dkms]" }))
        .optional()
        .describe(
          "DKMS packages built in each kernel flavor's layer against that flavor's kernel (its linux-headers are installed for the build); the modules also go into the flavor's initramfs.",
        ),
    },
    speak({ noun: "host profile settings", example: "{sysctl: {vm.swappiness: 10}, modules: [br_netfilter]}" }),
  )
  .superRefine(disjoint(["modules", "blacklist"], "module"), always);

export const AnsibleSchema = z.strictObject(
  {
    playbook: hostFile("a path to a playbook", "./site.yml").describe(
      "Playbook inside the recipe's folder, named relative to it (hosts: all). Its folder's roles/, tasks/, templates/, files/, vars/ and group_vars/ are part of the cache key.",
    ),
    vars: z
      .record(
        z.string(speak({ noun: "a variable name", rule: 'use letters, digits and "_", not starting with a digit', example: '"ntp_server"' })).regex(/^[A-Za-z_][A-Za-z0-9_]*$/),
        z.unknown(),
        { error: (iss) => (iss.code === "invalid_key" ? `${show(iss.input)} is not an Ansible variable name; use letters, digits and "_", e.g. ntp_server` : undefined) },
      )
      .default({})
      .describe("Extra variables for the playbook (ansible-playbook --extra-vars)."),
  },
  speak({ noun: "a playbook {playbook, vars}", example: "{playbook: ./site.yml}" }),
);

export const DiskPartitionSchema = z.strictObject(
  {
    name: z
      .string(speak({ noun: "a partition name", rule: `${LOWER_WORD} (at most 16)`, example: '"data"' }))
      .regex(/^[a-z0-9][a-z0-9-]{0,15}$/, { abort: true })
      .refine((n) => !["bios", "esp", "root"].includes(n), { error: (iss) => `${show(iss.input)} is the name of one of the disk's own partitions (bios, esp, root); pick another, e.g. "data"` })
      .describe("GPT partition name and filesystem label; unique on the disk (bios, esp and root are taken)."),
    size: size("a partition size", '"4G"').describe("Size, e.g. 4G."),
    mountpoint: absolutePath("a mount point", '"/srv/data"')
      .refine((m) => !["/boot", "/boot/efi"].includes(posix.normalize(m).replace(/\/$/, "")), { error: (iss) => `${show(iss.input)} holds the disk's boot files; mount the partition elsewhere, e.g. "/srv/data"` })
      .describe("Where it is mounted (fstab, by UUID, nofail). Must be empty or absent in the image."),
    filesystem: z.enum(["ext4"], speak({ noun: "a filesystem", rule: "use ext4" })).default("ext4").describe("Filesystem made on it (empty)."),
  },
  speak({ noun: "a partition {name, size, mountpoint}", example: "{name: data, size: 4G, mountpoint: /srv/data}" }),
);

export const QCOW2_COMPRESSIONS = ["zstd", "zlib", "none"] as const;

export const DiskSchema = z.strictObject(
  {
    size: size("a disk size", '"8G"')
      .optional()
      .describe("Size of the whole disk; the root partition gets what the other partitions leave. Left out: the root's content plus 25 % and 256 MiB."),
    filesystem: z.enum(["ext4"], speak({ noun: "a root filesystem", rule: "use ext4" })).default("ext4").describe("Root filesystem (made from the image tree with mkfs.ext4 -d)."),
    partitions: z
      .array(DiskPartitionSchema, speak({ noun: "a list of partitions", example: "[{name: data, size: 4G, mountpoint: /srv/data}]" }))
      .superRefine(unique("partitions", "name"), always)
      .superRefine(unique("partitions", "mountpoint", (m) => posix.normalize(m).replace(/(.)\/$/, "$1")), always)
      .default([])
      .describe("Extra partitions after the root {name, size, mountpoint, filesystem}. The disk always has a BIOS boot partition, an EFI system partition (128 MiB, FAT32) and the root."),
    compression: z
      .enum(QCOW2_COMPRESSIONS, speak({ noun: "a qcow2 compression", rule: `use ${QCOW2_COMPRESSIONS.join(", ")}` }))
      .default("zstd")
      .describe("qcow2 cluster compression: zstd (qemu ≥ 5.1 reads it), zlib (every qcow2 reader), none (fastest, biggest)."),
  },
  speak({ noun: "disk settings", example: "{size: 8G}" }),
);

// ---------------------------------------------------------------------------------------------
// the recipe

export const API_VERSION = "kiln/v1";

/** Checks that span fields; they run even when other fields are wrong, so values may be malformed. */
function checkAcrossFields(r: Record<string, unknown>, ctx: z.RefinementCtx<Record<string, unknown>>): void {
  const list = (v: unknown) => (Array.isArray(v) ? v : []);
  if (list(r.upgrade).length > 0 && list(r.repositories).length === 0)
    ctx.addIssue({
      code: "custom",
      path: ["upgrade"],
      message: "needs at least one repository to upgrade from, and repositories is empty; add one (e.g. bookworm-backports), or install these with packages",
    });
  const bootOutputs = ["kernel", "initrd", "qcow2", "iso"].filter((o) => list(r.outputs).includes(o));
  const needs: string[] = [];
  const fixes: string[] = [];
  if (bootOutputs.length > 0) {
    const named = bootOutputs.length === 1 ? bootOutputs[0]! : `${bootOutputs.slice(0, -1).join(", ")} and ${bootOutputs.at(-1)!}`;
    const byDefault = bootOutputs.includes("kernel") || bootOutputs.includes("initrd") ? " (the default outputs include kernel and initrd)" : "";
    needs.push(`outputs include ${named}`);
    fixes.push(`drop ${named} from outputs${byDefault}`);
  }
  if (r.disk !== undefined && Array.isArray(r.outputs) && !r.outputs.includes("qcow2"))
    ctx.addIssue({ code: "custom", path: ["disk"], message: "disk settings are for the qcow2 output, and outputs has no qcow2; add qcow2 to outputs, or remove disk" });
  if (r.verify === "boot") {
    needs.push("verify is boot");
    fixes.push("set verify: none");
  }
  if (needs.length > 0 && Array.isArray(r.kernels) && r.kernels.length === 0)
    ctx.addIssue({
      code: "custom",
      path: ["kernels"],
      message: `at least one kernel is needed because ${needs.join(" and ")}; add one, e.g. {flavor: generic, package: linux-image-amd64}, or ${fixes.join(" and ")}`,
    });
}

export const RecipeSchema = z
  .strictObject(
    {
      apiVersion: z
        .literal(API_VERSION, speak({ noun: "a format version this kiln reads", rule: `use ${API_VERSION}`, required: `required; start the recipe with "apiVersion: ${API_VERSION}"` }))
        .describe("Version of the recipe format. This page describes kiln/v1.")
        .meta({ examples: [API_VERSION] }),
      name: z
        .string(speak({ noun: "an image name", rule: 'use lowercase letters, digits, "." and "-" (at most 63)', example: '"bookworm-server"' }))
        .regex(RECIPE_NAME)
        .describe("Name of the image; artifacts and catalog records are named after it.")
        .meta({ examples: ["bookworm-server"] }),
      description: z
        .string(speak({ noun: "text" }))
        .optional()
        .describe("A sentence about the image, for people and the catalog.")
        .meta({ examples: ["Debian 12 server for the compute fleet"] }),
      base: BaseSchema.describe("Where the root filesystem comes from: bootstrap Debian, or import an existing image.").meta({
        examples: [{ debian: "bookworm", variant: "minbase" }, { image: "./cloud.squashfs" }],
      }),
      repositories: z
        .array(RepositorySchema, speak({ noun: "a list of repositories", example: "[{name: backports, uri: http://deb.debian.org/debian, suite: bookworm-backports}]" }))
        .superRefine(unique("repositories", "name"), always)
        .default([])
        .describe("Extra apt sources (backports, proposed updates, vendor archives) added before packages are installed.")
        .meta({ examples: [[{ name: "backports", uri: "http://deb.debian.org/debian", suite: "bookworm-backports", pin: 100 }]] }),
      packages: z
        .array(packageSpec, speak({ noun: "a list of package names", example: "[systemd, udev]" }))
        .default([])
        .describe('Debian packages to install. Pin a version with name=version or pick a suite with name/suite.')
        .meta({ examples: [["systemd", "systemd-sysv", "udev", "openssh-server"]] }),
      upgrade: z
        .array(packageName('"cloud-init"'), speak({ noun: "a list of package names", example: "[cloud-init]" }))
        .default([])
        .describe("Packages to install at the newest version the extra repositories offer (whether or not packages lists them), e.g. a newer tmux from backports. Needs at least one repository.")
        .meta({ examples: [["tmux"]] }),
      files: z
        .array(FileEntrySchema, speak({ noun: "a list of files", example: '[{path: /etc/motd, content: "hello\\n"}]' }))
        .superRefine(unique("files", "path", posix.normalize), always)
        .default([])
        .describe("Files to write into the image, each from inline content or from a file beside the recipe.")
        .meta({ examples: [[{ path: "/etc/motd", content: "Built by kiln.\n" }, { path: "/etc/ssh/sshd_config.d/kiln.conf", source: "./sshd.conf", mode: "0600" }]] }),
      caCertificates: z
        .array(hostFile("a path to a PEM file", "./site-ca.pem"), speak({ noun: "a list of PEM files", example: "[./site-ca.pem]" }))
        .default([])
        .describe("PEM certificate files to add to the image's trusted CAs (update-ca-certificates): files inside the recipe's folder, named relative to it.")
        .meta({ examples: [["./site-ca.pem"]] }),
      scripts: z
        .array(ScriptSchema, speak({ noun: "a list of scripts", example: '[{name: enable-ssh, run: "systemctl enable ssh"}]' }))
        .superRefine(unique("scripts", "name"), always)
        .default([])
        .describe("Scripts run inside the image after packages and files, in the order given.")
        .meta({ examples: [[{ name: "enable-ssh", run: "systemctl enable ssh" }]] }),
      kernels: z
        .array(KernelSchema, speak({ noun: "a list of kernels", example: "[{flavor: generic, package: linux-image-amd64}]" }))
        .superRefine(unique("kernels", "flavor"), always)
        .default([])
        .describe("Kernel flavors to build. Each is a small layer over the same root and yields its own kernel and initrd.")
        .meta({
          examples: [
            [
              { flavor: "generic", package: "linux-image-amd64" },
              { flavor: "rt", package: "linux-image-rt-amd64" },
              { flavor: "hwe", package: "linux-image-amd64", suite: "bookworm-backports" },
            ],
          ],
        }),
      cmdline: z
        .array(
          z.string(speak({ noun: "a kernel command-line word", rule: "give one word per entry, without spaces or quotes", example: '"console=ttyS0"' })).regex(CMDLINE_WORD),
          speak({ noun: "a list of kernel command-line words", example: "[console=ttyS0, quiet]" }),
        )
        .default([])
        .describe("Extra kernel command-line words, one word per entry: for the boot parameters, the disk's and the ISO's GRUB menu. The same as config.cmdline (kept from recipes written before config); both are used, these first.")
        .meta({ examples: [["console=ttyS0,115200", "quiet"]] }),
      config: ConfigSchema.default({})
        .describe("The host profile: kernel command line, sysctl, limits, kernel modules, huge pages, permissions, users and groups, systemd units, AppArmor and DKMS modules. Applied in its own layer after scripts (DKMS in each kernel flavor's layer).")
        .meta({
          examples: [
            {
              cmdline: ["console=ttyS0,115200"],
              sysctl: { "vm.swappiness": 10, "net.ipv4.ip_forward": 1 },
              limits: [{ domain: "*", type: "-", item: "nofile", value: 65536 }],
              modules: ["br_netfilter"],
              blacklist: ["floppy"],
              hugepages: [{ size: "2M", count: 512 }],
              permissions: [{ path: "/var/log/app", mode: "0750", owner: "root:adm", directory: true }],
              groups: [{ name: "ops" }],
              users: [{ name: "ops", groups: ["ops", "sudo"], sshAuthorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE3x9rkqj1lJmMWFSzlPhp0n8q0kWXvZ2bTzqj0pX4Zq ops@example"], sudo: true }],
              units: { enable: ["ssh.service"], disable: ["apt-daily.timer"] },
              apparmor: true,
              dkms: ["acpi-call-dkms"],
            },
          ],
        }),
      ansible: z
        .array(AnsibleSchema, speak({ noun: "a list of playbooks", example: "[{playbook: ./site.yml}]" }))
        .default([])
        .describe("Ansible playbooks run against the image, in order, after config (the build host's ansible-playbook in a jail that sees only the playbook's folder and the image, chroot connection); the image needs python3.")
        .meta({ examples: [[{ playbook: "./site.yml", vars: { ntp_server: "ntp.example" } }]] }),
      outputs: z
        .array(
          z.enum(OUTPUT_KINDS, speak({ noun: "an output", rule: `use one of ${OUTPUT_KINDS.join(", ")}` })),
          speak({ noun: "a list of outputs", example: "[squashfs, kernel, initrd, manifest]" }),
        )
        .min(1)
        .superRefine((items, ctx) => {
          if (!Array.isArray(items)) return;
          items.forEach((o, i) => {
            if (items.indexOf(o) < i) ctx.addIssue({ code: "custom", path: [i], message: `${show(o)} is listed twice; list each output once` });
          });
        }, always)
        .default(DEFAULT_OUTPUTS)
        .describe("Artifacts to produce: the squashfs root, a kernel and initrd per flavor, the package manifest, a rootfs tarball, a qcow2 disk and a live ISO (both with the first flavor's kernel, booting on BIOS and UEFI).")
        .meta({ examples: [["squashfs", "kernel", "initrd", "manifest", "qcow2", "iso"]] }),
      disk: DiskSchema.optional()
        .describe("The qcow2 disk: GPT with a BIOS boot partition, an EFI system partition and an ext4 root; GRUB for BIOS, shim and signed GRUB for UEFI (Secure Boot). Defaults fit most uses.")
        .meta({ examples: [{ size: "8G", partitions: [{ name: "data", size: "2G", mountpoint: "/srv/data" }] }] }),
      squashfs: SquashfsSchema.default({ compression: "zstd" })
        .describe("How the squashfs root is compressed.")
        .meta({ examples: [{ compression: "zstd", level: 3 }] }),
      verify: z
        .enum(["boot", "none"], speak({ noun: "a verification", rule: "use boot or none" }))
        .default("none")
        .describe("boot: boot each kernel with the squashfs under qemu and pass only when the guest reaches userspace.")
        .meta({ examples: ["boot"] }),
      epoch: z
        .int(speak({ noun: "a time in whole seconds since 1970-01-01 UTC", rule: "give a non-negative integer, e.g. the output of date +%s", example: "1717171717" }))
        .min(0)
        .max(253402300799) // 9999-12-31: ISO 9660 and FAT cannot state later dates
        .optional()
        .describe(
          "SOURCE_DATE_EPOCH of the build (docs/reproducible.md): every file time in the image is clamped to it and every artifact states it as its date. Default: the Date of the base archive's Release file (a Debian base) or the newest file time in the imported image, so the same archive state gives the same bytes.",
        )
        .meta({ examples: [1717171717] }),
      proxy: ProxySchema.optional()
        .describe("Proxies for downloads during the build; each one given here wins over the environment's http_proxy, https_proxy or no_proxy. Never written into the image.")
        .meta({ examples: [{ http: "http://proxy.example:3128", noProxy: "localhost,.internal" }] }),
    },
    speak({ noun: "a mapping of recipe fields", example: "apiVersion: kiln/v1" }),
  )
  .superRefine(checkAcrossFields, always)
  .describe(
    "A recipe says what goes into an image: where the root comes from, which packages, files and scripts go in, which kernels to build and which artifacts to produce.",
  );

export type RecipeInput = z.input<typeof RecipeSchema>;
export type Recipe = z.output<typeof RecipeSchema>;
export type BaseDebian = z.output<typeof BaseDebianSchema>;
export type BaseImage = z.output<typeof BaseImageSchema>;
export type Repository = z.output<typeof RepositorySchema>;
export type FileEntry = z.output<typeof FileEntrySchema>;
export type Script = z.output<typeof ScriptSchema>;
export type Kernel = z.output<typeof KernelSchema>;
export type OutputKind = (typeof OUTPUT_KINDS)[number];
export type Config = z.output<typeof ConfigSchema>;
export type Limit = z.output<typeof LimitSchema>;
export type Permission = z.output<typeof PermissionSchema>;
export type Group = z.output<typeof GroupSchema>;
export type User = z.output<typeof UserSchema>;
export type AnsiblePlay = z.output<typeof AnsibleSchema>;
export type Disk = z.output<typeof DiskSchema>;


/**
 * The recipe format as a table: good recipes parse and get their defaults; each bad recipe yields
 * a problem at the expected field path whose message says what is wrong and what is allowed.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { stringify } from "yaml";
import { isKilnError, type KilnError } from "../../src/errors.js";
import { parseRecipe } from "../../src/recipe/load.js";
import type { Recipe } from "../../src/recipe/schema.js";

const DIR = "/srv/recipes";

/** A valid recipe to start each case from. */
const GOOD = {
  apiVersion: "kiln/v1",
  name: "test",
  base: { debian: "bookworm" },
  kernels: [{ flavor: "generic", package: "linux-image-amd64" }],
};

/** GOOD with fields replaced; a field set to undefined is left out. */
function recipe(fields: Record<string, unknown>): string {
  return stringify({ ...GOOD, ...fields });
}

function parse(text: string): Recipe {
  return parseRecipe(text, "recipe.yaml", DIR);
}

function problemsOf(text: string): KilnError {
  try {
    parse(text);
  } catch (e) {
    if (isKilnError(e)) return e;
    throw e;
  }
  assert.fail("expected the recipe to be rejected");
}

void test("a minimal recipe gets every default", () => {
  const r = parse(recipe({}));
  assert.deepEqual(r, {
    apiVersion: "kiln/v1",
    name: "test",
    base: { debian: "bookworm", variant: "minbase", components: ["main"] },
    repositories: [],
    packages: [],
    upgrade: [],
    files: [],
    caCertificates: [],
    scripts: [],
    kernels: [{ flavor: "generic", package: "linux-image-amd64" }],
    cmdline: [],
    config: {},
    ansible: [],
    outputs: ["squashfs", "kernel", "initrd", "manifest"],
    squashfs: { compression: "zstd" },
    verify: "none",
  });
});

const goodCases: Array<{ name: string; text: string; check: (r: Recipe) => void }> = [
  {
    name: "entries get their defaults",
    text: recipe({
      repositories: [{ name: "backports", uri: "http://deb.debian.org/debian", suite: "bookworm-backports" }],
      files: [{ path: "/etc/motd", content: "hi\n" }],
    }),
    check: (r) => {
      assert.deepEqual(r.repositories[0]?.components, ["main"]);
      assert.equal(r.repositories[0]?.pin, undefined);
      assert.deepEqual(r.files[0], { path: "/etc/motd", content: "hi\n", mode: "0644", owner: "root:root" });
    },
  },
  {
    name: "an imported image resolves against the recipe's folder",
    text: recipe({ base: { image: "./cloud.squashfs" } }),
    check: (r) => assert.deepEqual(r.base, { image: `${DIR}/cloud.squashfs`, format: "auto" }),
  },
  {
    name: "every referenced path comes back absolute, resolved against the recipe's folder",
    text: recipe({
      repositories: [{ name: "vendor", uri: "file:///srv/repo", suite: "stable", key: "keys/vendor.asc" }],
      files: [{ path: "/etc/a", source: "shared/../a" }],
      caCertificates: ["./ssl/site-ca.pem"],
      scripts: [{ name: "tune", source: "./tune.sh" }],
    }),
    check: (r) => {
      assert.equal(r.repositories[0]?.key, `${DIR}/keys/vendor.asc`);
      assert.equal(r.files[0]?.source, `${DIR}/a`);
      assert.deepEqual(r.caCertificates, [`${DIR}/ssl/site-ca.pem`]);
      assert.equal(r.scripts[0]?.source, `${DIR}/tune.sh`);
    },
  },
  {
    name: "package specs take =version and /suite",
    text: recipe({ packages: ["openssh-server", "libc6=2.36-9+deb12u4", "linux-image-amd64/bookworm-backports", "g++"] }),
    check: (r) => assert.equal(r.packages.length, 4),
  },
  {
    name: "xz without a level, and zstd with one",
    text: recipe({ squashfs: { compression: "xz" } }),
    check: (r) => assert.deepEqual(r.squashfs, { compression: "xz" }),
  },
  {
    name: "no kernels is fine when nothing needs one",
    text: recipe({ kernels: undefined, outputs: ["squashfs", "manifest", "tarball"] }),
    check: (r) => assert.deepEqual(r.kernels, []),
  },
  {
    name: "every field at once",
    text: recipe({
      description: "all of it",
      base: { debian: "trixie", variant: "important", components: ["main", "non-free-firmware"], mirror: "https://mirror.example/debian" },
      repositories: [{ name: "backports", uri: "http://deb.debian.org/debian", suite: "bookworm-backports", components: ["main", "contrib"], pin: 1001 }],
      upgrade: ["tmux"],
      cmdline: ["console=ttyS0,115200", "quiet"],
      outputs: ["squashfs", "kernel", "initrd", "manifest", "tarball"],
      squashfs: { compression: "zstd", level: 19 },
      verify: "boot",
      proxy: { http: "http://proxy:3128", https: "http://proxy:3128", noProxy: "localhost" },
    }),
    check: (r) => {
      assert.equal(r.squashfs.level, 19);
      assert.equal(r.proxy?.noProxy, "localhost");
      assert.equal(r.verify, "boot");
    },
  },
  {
    name: "a host profile gets its defaults",
    text: recipe({
      config: {
        sysctl: { "vm.swappiness": 10, "net.ipv4.conf.*.rp_filter": 2, "net.ipv4.ip_local_port_range": "32768 60999" },
        limits: [{ domain: "@ops", item: "nofile", value: 65536 }, { domain: "*", type: "hard", item: "memlock", value: "unlimited" }],
        modules: ["br_netfilter", "nvidia-drm"],
        blacklist: ["floppy"],
        hugepages: [{ count: 512 }, { size: "1G", count: 4 }],
        permissions: [{ path: "/var/log/app", mode: "0750" }, { path: "/srv/x", directory: true }],
        groups: [{ name: "ops" }],
        users: [{ name: "ops", sshAuthorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE3x ops@example"] }],
        units: { enable: ["ssh.service", "getty@ttyS0.service"] },
        apparmor: false,
        dkms: ["acpi-call-dkms"],
      },
    }),
    check: (r) => {
      assert.deepEqual(r.config.limits?.[0], { domain: "@ops", type: "-", item: "nofile", value: 65536 });
      assert.deepEqual(r.config.hugepages, [{ size: "2M", count: 512 }, { size: "1G", count: 4 }]);
      assert.deepEqual(r.config.permissions?.[1], { path: "/srv/x", directory: true });
      assert.deepEqual(r.config.groups, [{ name: "ops", system: false }]);
      assert.deepEqual(r.config.users?.[0], { name: "ops", groups: [], shell: "/bin/bash", system: false, sshAuthorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE3x ops@example"], sudo: false });
      assert.deepEqual(r.config.units, { enable: ["ssh.service", "getty@ttyS0.service"], disable: [], mask: [] });
    },
  },
  {
    name: "qcow2 and iso with disk settings",
    text: recipe({ outputs: ["squashfs", "qcow2", "iso"], disk: { size: "8G", partitions: [{ name: "data", size: "2G", mountpoint: "/srv/data" }] } }),
    check: (r) => assert.deepEqual(r.disk, { size: "8G", filesystem: "ext4", partitions: [{ name: "data", size: "2G", mountpoint: "/srv/data", filesystem: "ext4" }], compression: "zstd" }),
  },
  {
    name: "a playbook resolves against the recipe's folder",
    text: recipe({ ansible: [{ playbook: "ansible/site.yml" }, { playbook: "./other.yml", vars: { ntp_server: "ntp.example", ports: [1, 2] } }] }),
    check: (r) => assert.deepEqual(r.ansible, [{ playbook: `${DIR}/ansible/site.yml`, vars: {} }, { playbook: `${DIR}/other.yml`, vars: { ntp_server: "ntp.example", ports: [1, 2] } }]),
  },
  {
    name: "octal mode written 0o755 or 4 digits",
    text: recipe({ files: [{ path: "/usr/local/bin/x", content: "", mode: "4755", owner: "0:0" }] }),
    check: (r) => assert.equal(r.files[0]?.mode, "4755"),
  },
];

for (const c of goodCases) {
  void test(`good: ${c.name}`, () => c.check(parse(c.text)));
}

/** Each bad recipe: the field path of the problem and a phrase its message must contain. */
const badCases: Array<{ name: string; text: string; path: string; says: string }> = [
  // whole file
  { name: "empty file", text: "", path: "", says: "the file is empty" },
  { name: "only comments", text: "# nothing yet\n", path: "", says: "the file is empty" },
  { name: "not a mapping", text: "- apiVersion: kiln/v1\n", path: "", says: "expected a mapping of recipe fields, got a list" },
  { name: "YAML syntax error", text: "apiVersion: kiln/v1\nname: [test\nbase: x\n", path: "", says: "line 3, column 1: YAML syntax" },
  { name: "duplicate key", text: "apiVersion: kiln/v1\nname: a\nname: b\n", path: "", says: 'line 3, column 1: "name" appears twice' },
  { name: "tab indentation", text: "base:\n\tdebian: bookworm\n", path: "", says: "indent with spaces" },
  { name: "two documents", text: "apiVersion: kiln/v1\n---\nname: x\n", path: "", says: "a recipe is one YAML document" },
  // apiVersion, name, description
  { name: "missing apiVersion", text: recipe({ apiVersion: undefined }), path: "apiVersion", says: 'required; start the recipe with "apiVersion: kiln/v1"' },
  { name: "wrong apiVersion", text: recipe({ apiVersion: "kiln/v2", kernal: [] }), path: "apiVersion", says: '"kiln/v2" is not a format version this kiln reads; use kiln/v1' },
  { name: "missing name", text: recipe({ name: undefined }), path: "name", says: "required; give an image name" },
  { name: "bad name", text: recipe({ name: "My Image" }), path: "name", says: '"My Image" is not an image name; use lowercase letters' },
  { name: "description not text", text: recipe({ description: 5 }), path: "description", says: "expected text, got the number 5" },
  // unknown fields
  { name: "unknown field, close to a known one", text: recipe({ kernal: [] }), path: "kernal", says: 'unknown field; did you mean "kernels"?' },
  { name: "snake_case spelling", text: recipe({ ca_certificates: [] }), path: "ca_certificates", says: 'did you mean "caCertificates"?' },
  { name: "unknown field, nothing close", text: recipe({ bootloader: [] }), path: "bootloader", says: "unknown field; the fields here are apiVersion, name" },
  { name: "unknown nested field", text: recipe({ kernels: [{ flavour: "rt", package: "linux-image-rt-amd64" }] }), path: "kernels[0].flavour", says: 'did you mean "flavor"?' },
  { name: "swapped letters in base", text: recipe({ base: { image: "./x", fromat: "qcow2" } }), path: "base.fromat", says: 'did you mean "format"?' },
  { name: "unknown field in the debian form", text: recipe({ base: { debian: "bookworm", suite: "x" } }), path: "base.suite", says: "the fields here are debian, variant, components, mirror" },
  { name: "misspelt base key", text: recipe({ base: { imag: "./x" } }), path: "base.imag", says: 'did you mean "image"?' },
  { name: "both forms, one with a bad value", text: recipe({ base: { debian: "bookworm", image: "./x", variant: "bad" } }), path: "base", says: "give debian or image, not both" },
  // base
  { name: "missing base", text: recipe({ base: undefined }), path: "base", says: "required; give {debian: bookworm} or {image: ./cloud.squashfs}" },
  { name: "both debian and image", text: recipe({ base: { debian: "bookworm", image: "./x.squashfs" } }), path: "base", says: "give debian or image, not both" },
  { name: "neither debian nor image", text: recipe({ base: { variant: "minbase" } }), path: "base", says: "give debian (a suite to bootstrap) or image" },
  { name: "base as a string", text: recipe({ base: "bookworm" }), path: "base", says: "expected a mapping, got a string" },
  { name: "bad variant", text: recipe({ base: { debian: "bookworm", variant: "tiny" } }), path: "base.variant", says: '"tiny" is not a bootstrap variant; use one of minbase, essential' },
  { name: "mirror not http(s)", text: recipe({ base: { debian: "bookworm", mirror: "ftp://ftp.debian.org/debian" } }), path: "base.mirror", says: "is not an http(s) URL" },
  { name: "mirror not a URL", text: recipe({ base: { debian: "bookworm", mirror: "deb.debian.org" } }), path: "base.mirror", says: '"deb.debian.org" is not an http(s) URL' },
  { name: "bad suite", text: recipe({ base: { debian: "Bookworm" } }), path: "base.debian", says: "is not a suite name" },
  { name: "empty components", text: recipe({ base: { debian: "bookworm", components: [] } }), path: "base.components", says: "must not be empty" },
  { name: "absolute source", text: recipe({ files: [{ path: "/etc/x", source: "/etc/shadow" }] }), path: "files[0].source", says: `"/etc/shadow" is outside the recipe's folder; put the file in the recipe's folder and name it relative to it` },
  { name: "source climbing out", text: recipe({ files: [{ path: "/etc/x", source: "a/../../etc/hostname" }] }), path: "files[0].source", says: "is outside the recipe's folder" },
  { name: "absolute CA", text: recipe({ caCertificates: ["/etc/ssl/site-ca.pem"] }), path: "caCertificates[0]", says: "is outside the recipe's folder" },
  { name: "absolute playbook", text: recipe({ ansible: [{ playbook: "/srv/other.yml" }] }), path: "ansible[0].playbook", says: "is outside the recipe's folder" },
  { name: "image above the folder", text: recipe({ base: { image: "../cloud.squashfs" } }), path: "base.image", says: "is outside the recipe's folder" },
  { name: "bad image format", text: recipe({ base: { image: "./x", format: "iso" } }), path: "base.format", says: "use one of auto, squashfs, qcow2, raw, tar" },
  // repositories
  { name: "repositories empty value", text: "apiVersion: kiln/v1\nname: t\nbase: {debian: bookworm}\noutputs: [squashfs]\nrepositories:\n", path: "repositories", says: "expected a list of repositories, got an empty value" },
  { name: "repository missing suite", text: recipe({ repositories: [{ name: "x", uri: "http://a/debian" }] }), path: "repositories[0].suite", says: "required" },
  { name: "repository bad name", text: recipe({ repositories: [{ name: "Back Ports", uri: "http://a/debian", suite: "s" }] }), path: "repositories[0].name", says: "is not a repository name" },
  { name: "repository bad uri", text: recipe({ repositories: [{ name: "x", uri: "ssh://a/debian", suite: "s" }] }), path: "repositories[0].uri", says: "is not an http(s) or file URL" },
  { name: "duplicate repository names", text: recipe({ repositories: [{ name: "x", uri: "http://a/", suite: "s" }, { name: "x", uri: "http://b/", suite: "s" }] }), path: "repositories[1].name", says: '"x" is already used by repositories[0]' },
  { name: "pin out of range", text: recipe({ repositories: [{ name: "x", uri: "http://a/", suite: "s", pin: 5000 }] }), path: "repositories[0].pin", says: "use a whole number from -1000 to 1001" },
  { name: "fractional pin", text: recipe({ repositories: [{ name: "x", uri: "http://a/", suite: "s", pin: 2.5 }] }), path: "repositories[0].pin", says: "expected an apt pin priority, got the number 2.5" },
  // packages, upgrade
  { name: "packages as a string", text: recipe({ packages: "systemd udev" }), path: "packages", says: "expected a list of package names, got a string" },
  { name: "bad package name", text: recipe({ packages: ["systemd", "Vim"] }), path: "packages[1]", says: '"Vim" is not a package name' },
  { name: "upgrade without repositories", text: recipe({ upgrade: ["tmux"] }), path: "upgrade", says: "needs at least one repository to upgrade from" },
  { name: "upgrade with a version", text: recipe({ repositories: [{ name: "x", uri: "http://a/", suite: "s" }], upgrade: ["tmux=3.5"] }), path: "upgrade[0]", says: "is not a package name" },
  // files
  { name: "file with content and source", text: recipe({ files: [{ path: "/etc/motd", content: "x", source: "./motd" }] }), path: "files[0]", says: "give content or source, not both" },
  { name: "file with neither", text: recipe({ files: [{ path: "/etc/motd" }] }), path: "files[0]", says: "give content or source" },
  { name: "relative file path", text: recipe({ files: [{ path: "etc/motd", content: "x" }] }), path: "files[0].path", says: '"etc/motd" is not an absolute path in the image' },
  { name: 'file path with ".."', text: recipe({ files: [{ path: "/etc/../root/x", content: "x" }] }), path: "files[0].path", says: 'contains ".."' },
  { name: "file path /", text: recipe({ files: [{ path: "/", content: "x" }] }), path: "files[0].path", says: "is the image's root, not a file" },
  { name: "duplicate file paths", text: recipe({ files: [{ path: "/etc/motd", content: "a" }, { path: "/etc//motd", content: "b" }] }), path: "files[1].path", says: "is already used by files[0]" },
  { name: "bad mode", text: recipe({ files: [{ path: "/etc/motd", content: "x", mode: "0999" }] }), path: "files[0].mode", says: '"0999" is not an octal mode' },
  { name: "unquoted mode", text: "apiVersion: kiln/v1\nname: t\nbase: {debian: bookworm}\noutputs: [squashfs]\nfiles:\n  - {path: /etc/motd, content: x, mode: 0644}\n", path: "files[0].mode", says: 'got the number 644; use 3 or 4 octal digits, quoted' },
  { name: "bad owner", text: recipe({ files: [{ path: "/etc/motd", content: "x", owner: "root" }] }), path: "files[0].owner", says: 'is not an owner "user:group"' },
  // caCertificates, scripts
  { name: "empty CA path", text: recipe({ caCertificates: [""] }), path: "caCertificates[0]", says: "must not be empty" },
  { name: "script with run and source", text: recipe({ scripts: [{ name: "x", run: "true", source: "./x.sh" }] }), path: "scripts[0]", says: "give run or source, not both" },
  { name: "script without a name", text: recipe({ scripts: [{ run: "true" }] }), path: "scripts[0].name", says: "required; give a script name" },
  { name: "duplicate script names", text: recipe({ scripts: [{ name: "x", run: "a" }, { name: "x", run: "b" }] }), path: "scripts[1].name", says: "already used by scripts[0]" },
  // kernels
  { name: "bad flavor", text: recipe({ kernels: [{ flavor: "generic", package: "linux-image-amd64" }, { flavor: "RT!", package: "linux-image-rt-amd64" }] }), path: "kernels[1].flavor", says: '"RT!" is not a flavor name; use lowercase letters, digits and "-", e.g. "rt"' },
  { name: "duplicate flavors", text: recipe({ kernels: [{ flavor: "rt", package: "linux-image-rt-amd64" }, { flavor: "rt", package: "linux-image-amd64" }] }), path: "kernels[1].flavor", says: '"rt" is already used by kernels[0]' },
  { name: "kernel without package", text: recipe({ kernels: [{ flavor: "generic" }] }), path: "kernels[0].package", says: 'required; give a package name, e.g. "linux-image-amd64"' },
  { name: "kernel outputs without kernels", text: recipe({ kernels: undefined }), path: "kernels", says: "at least one kernel is needed because outputs include kernel and initrd" },
  { name: "boot check without kernels", text: recipe({ kernels: [], outputs: ["squashfs"], verify: "boot" }), path: "kernels", says: "because verify is boot; add one" },
  // cmdline, outputs, squashfs, verify, proxy
  { name: "cmdline word with a space", text: recipe({ cmdline: ["console=ttyS0 quiet"] }), path: "cmdline[0]", says: "give one word per entry" },
  { name: "unknown output", text: recipe({ outputs: ["squashfs", "vmdk"] }), path: "outputs[1]", says: '"vmdk" is not an output; use one of squashfs, kernel' },
  { name: "duplicate output", text: recipe({ outputs: ["squashfs", "kernel", "squashfs"] }), path: "outputs[2]", says: '"squashfs" is listed twice' },
  { name: "no outputs", text: recipe({ outputs: [] }), path: "outputs", says: "must not be empty" },
  { name: "xz with a level", text: recipe({ squashfs: { compression: "xz", level: 9 } }), path: "squashfs.level", says: "xz takes no level; remove level, or use compression: zstd" },
  { name: "zstd level too high", text: recipe({ squashfs: { level: 30 } }), path: "squashfs.level", says: "the number 30 is not a zstd level; use 1 (fastest) to 22" },
  { name: "bad verify", text: recipe({ verify: true }), path: "verify", says: "true is not a verification; use boot or none" },
  { name: "bad proxy URL", text: recipe({ proxy: { http: "proxy:3128" } }), path: "proxy.http", says: "is not a proxy URL" },
  // config: the host profile
  { name: "sysctl name with a space", text: recipe({ config: { sysctl: { "vm swappiness": 10 } } }), path: 'config.sysctl["vm swappiness"]', says: '"vm swappiness" is not a sysctl name; use dotted words as sysctl -a prints them' },
  { name: "sysctl line written as a name", text: recipe({ config: { sysctl: { "vm.swappiness=10": 1 } } }), path: 'config.sysctl["vm.swappiness=10"]', says: 'without "=" or spaces' },
  { name: "sysctl name without a dot", text: recipe({ config: { sysctl: { swappiness: 10 } } }), path: "config.sysctl.swappiness", says: "is not a sysctl name" },
  { name: "sysctl value true", text: recipe({ config: { sysctl: { "net.ipv4.ip_forward": true } } }), path: 'config.sysctl["net.ipv4.ip_forward"]', says: "expected a sysctl value, got true; use a number or one line of text (1 or 0, not true or false)" },
  { name: "sysctl value on two lines", text: recipe({ config: { sysctl: { "kernel.core_pattern": "a\nb" } } }), path: 'config.sysctl["kernel.core_pattern"]', says: "is not a sysctl value; use one line of text" },
  { name: "sysctl as a list", text: recipe({ config: { sysctl: ["vm.swappiness=10"] } }), path: "config.sysctl", says: "expected a mapping of sysctl names to values, got a list" },
  { name: "module name with a slash", text: recipe({ config: { modules: ["kernel/drivers/net/dummy.ko"] } }), path: "config.modules[0]", says: "is not a kernel module name; use the name modprobe takes" },
  { name: "module loaded and blacklisted", text: recipe({ config: { modules: ["floppy"], blacklist: ["floppy"] } }), path: "config.blacklist[0]", says: '"floppy" is also in modules' },
  { name: "user with a password", text: recipe({ config: { users: [{ name: "ops", password: "s3cret" }] } }), path: "config.users[0].password", says: "passwords are never written into an image" },
  { name: "user with a password hash", text: recipe({ config: { users: [{ name: "ops", hashed_passwd: "$6$x$y" }] } }), path: "config.users[0].hashed_passwd", says: "passwords are never written into an image" },
  { name: "user with cloud-init's passwd", text: recipe({ config: { users: [{ name: "ops", passwd: "$6$x$y" }] } }), path: "config.users[0].passwd", says: "give sshAuthorizedKeys" },
  { name: "a private key as an SSH key", text: recipe({ config: { users: [{ name: "ops", sshAuthorizedKeys: ["-----BEGIN OPENSSH PRIVATE KEY-----"] }] } }), path: "config.users[0].sshAuthorizedKeys[0]", says: "is not an SSH public key" },
  { name: "bad user name", text: recipe({ config: { users: [{ name: "Ops Team" }] } }), path: "config.users[0].name", says: '"Ops Team" is not a user name' },
  { name: "duplicate users", text: recipe({ config: { users: [{ name: "ops" }, { name: "ops" }] } }), path: "config.users[1].name", says: "already used by users[0]" },
  { name: "unknown limit item", text: recipe({ config: { limits: [{ domain: "*", item: "files", value: 10 }] } }), path: "config.limits[0].item", says: '"files" is not a limits.conf item; use one of core' },
  { name: "limit value in words", text: recipe({ config: { limits: [{ domain: "*", item: "nofile", value: "lots" }] } }), path: "config.limits[0].value", says: '"lots" is not a limit value; use a whole number, unlimited or infinity' },
  { name: "zero huge pages", text: recipe({ config: { hugepages: [{ size: "2M", count: 0 }] } }), path: "config.hugepages[0].count", says: "is not a number of pages" },
  { name: "unknown huge page size", text: recipe({ config: { hugepages: [{ size: "4M", count: 8 }] } }), path: "config.hugepages[0].size", says: '"4M" is not a huge page size; use 2M or 1G' },
  { name: "permission with neither mode nor owner", text: recipe({ config: { permissions: [{ path: "/etc/x" }] } }), path: "config.permissions[0]", says: "give mode or owner" },
  { name: "relative permission path", text: recipe({ config: { permissions: [{ path: "etc/x", mode: "0600" }] } }), path: "config.permissions[0].path", says: "is not an absolute path in the image" },
  { name: "unit with a path", text: recipe({ config: { units: { enable: ["/etc/systemd/system/x.service"] } } }), path: "config.units.enable[0]", says: "is not a systemd unit name" },
  { name: "unit enabled and masked", text: recipe({ config: { units: { enable: ["ssh.service"], mask: ["ssh.service"] } } }), path: "config.units.mask[0]", says: '"ssh.service" is also in enable' },
  { name: "apparmor as a word", text: recipe({ config: { apparmor: "on" } }), path: "config.apparmor", says: "expected true or false" },
  { name: "bad DKMS package", text: recipe({ config: { dkms: ["Wireguard DKMS"] } }), path: "config.dkms[0]", says: "is not a package name" },
  { name: "unknown profile field", text: recipe({ config: { sysctls: {} } }), path: "config.sysctls", says: 'did you mean "sysctl"?' },
  // ansible
  { name: "playbook missing", text: recipe({ ansible: [{ vars: {} }] }), path: "ansible[0].playbook", says: "required; give a path to a playbook" },
  { name: "bad Ansible variable name", text: recipe({ ansible: [{ playbook: "./site.yml", vars: { "ntp-server": "x" } }] }), path: "ansible[0].vars.ntp-server", says: "is not an Ansible variable name" },
  // disk, qcow2, iso
  { name: "disk without qcow2", text: recipe({ disk: { size: "8G" } }), path: "disk", says: "disk settings are for the qcow2 output" },
  { name: "disk size in GB", text: recipe({ outputs: ["qcow2"], disk: { size: "8GB" } }), path: "disk.size", says: '"8GB" is not a disk size; use a whole number of M, G or T' },
  { name: "partition named root", text: recipe({ outputs: ["qcow2"], disk: { partitions: [{ name: "root", size: "1G", mountpoint: "/srv" }] } }), path: "disk.partitions[0].name", says: "is the name of one of the disk's own partitions" },
  { name: "partition on /boot/efi", text: recipe({ outputs: ["qcow2"], disk: { partitions: [{ name: "efi2", size: "1G", mountpoint: "/boot/efi" }] } }), path: "disk.partitions[0].mountpoint", says: "holds the disk's boot files" },
  { name: "two partitions on one mount point", text: recipe({ outputs: ["qcow2"], disk: { partitions: [{ name: "a", size: "1G", mountpoint: "/srv" }, { name: "b", size: "1G", mountpoint: "/srv/" }] } }), path: "disk.partitions[1].mountpoint", says: "already used by partitions[0]" },
  { name: "unknown qcow2 compression", text: recipe({ outputs: ["qcow2"], disk: { compression: "xz" } }), path: "disk.compression", says: '"xz" is not a qcow2 compression; use zstd, zlib, none' },
  { name: "qcow2 without kernels", text: recipe({ kernels: [], outputs: ["qcow2", "iso"] }), path: "kernels", says: "at least one kernel is needed because outputs include qcow2 and iso; add one" },
];

for (const c of badCases) {
  void test(`bad: ${c.name}`, () => {
    const e = problemsOf(c.text);
    assert.equal(e.code, "RECIPE_INVALID");
    const found = e.problems.find((p) => p.path === c.path && p.message.includes(c.says));
    assert.ok(found, `no problem at "${c.path}" saying ${JSON.stringify(c.says)}; got:\n${e.message}`);
    // Every line names the file and the path, and none is zod's own wording.
    const line = `recipe.yaml: ${c.path ? `${c.path}: ` : ""}${found.message}`;
    assert.ok(e.message.split("\n").includes(line), e.message);
    assert.doesNotMatch(e.message, /Invalid input|Unrecognized key|expected string, received/);
  });
}

void test("another format version is the only problem reported", () => {
  const e = problemsOf(recipe({ apiVersion: "kiln/v2", kernal: [], base: undefined }));
  assert.deepEqual(e.problems.map((p) => p.path), ["apiVersion"]);
});

void test("all problems are reported at once, in the order they appear in the file", () => {
  const text = [
    "apiVersion: kiln/v1",
    "name: Bad Name",
    "base: {debian: bookworm, variant: tiny}",
    "packages: [Vim]",
    "upgrade: [tmux]",
    "kernels:",
    "  - {flavor: RT!, package: linux-image-rt-amd64}",
    "  - {flavor: generic}",
    "squashfs: {compression: xz, level: 9}",
    "kernal: []",
    "",
  ].join("\n");
  const e = problemsOf(text);
  assert.deepEqual(
    e.problems.map((p) => p.path),
    ["name", "base.variant", "packages[0]", "upgrade", "kernels[0].flavor", "kernels[1].package", "squashfs.level", "kernal"],
  );
  assert.equal(e.exitCode, 2);
  assert.equal(e.message.split("\n").length, 8);
});

void test("problems carry no stack and no zod internals", () => {
  const e = problemsOf(recipe({ kernels: [{ flavor: 1 }], base: { debian: 2 } }));
  assert.doesNotMatch(e.message, /\n\s+at |ZodError|"code":/);
  assert.deepEqual(
    e.problems.map((p) => `${p.path}: ${p.message}`),
    [
      "base.debian: expected a suite name, got the number 2; use a Debian suite or codename, e.g. bookworm",
      'kernels[0].flavor: expected a flavor name, got the number 1; use lowercase letters, digits and "-", e.g. "rt"',
      'kernels[0].package: required; give a package name, e.g. "linux-image-amd64"',
    ],
  );
});

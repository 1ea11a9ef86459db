/**
 * Importing an existing image as the base root of a build (`base: { image, format }`): the
 * public face of src/stages/import/. The import stage (import.ts) calls these two functions.
 *
 *   detectImageFormat(path)   magic bytes → "squashfs" | "qcow2" | "raw" | "tar"   (import/detect.ts)
 *   extractImage(image, format, destDir, ctx)
 *                             fills an empty dir with the image's root tree       (import/extract.ts)
 *
 * A tarball passes a safety scan first (import/tar-safety.ts); a disk image's root partition is
 * chosen by rule (import/partitions.ts). Problems with the file are INPUT_INVALID and name it.
 */
export { detectImageFormat, type ImageFormat } from "./import/detect.js";
export { extractImage, type ImportContext } from "./import/extract.js";

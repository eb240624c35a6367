/**
 * A bundle file: UTF-8 text as a plain string, or any bytes as `{ content, encoding: "base64" }`
 * (tarballs, images). Stored as given; only the sandbox turns it into bytes.
 */
export type BundleFile = string | { content: string; encoding: 'base64' };
export type Bundle = Record<string, BundleFile>;

/** The bytes a bundle file stands for. */
export function bundleFileBytes(file: BundleFile): Buffer {
  return typeof file === 'string' ? Buffer.from(file, 'utf8') : Buffer.from(file.content, 'base64');
}

/** The characters a bundle file takes once stored (its base64 text for binary files). */
export function storedLength(file: BundleFile): number {
  return typeof file === 'string' ? Buffer.byteLength(file, 'utf8') : Buffer.byteLength(file.content, 'utf8') + 'base64'.length;
}

/** The form that carries `bytes` exactly: text when they are valid UTF-8, base64 otherwise. */
export function bundleFileOf(bytes: Uint8Array): BundleFile {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return { content: Buffer.from(bytes).toString('base64'), encoding: 'base64' };
  }
}

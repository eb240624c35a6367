import { watch, type FSWatcher } from 'node:fs';
import { chmod, lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Local state is owner-only (files 0600, dirs 0700): it holds ciphertexts, key material and
 * deployment records, and the machine may have other users. Tightens a tree that already exists.
 */
export async function restrictTree(dir: string): Promise<void> {
  await chmod(dir, 0o700);
  for (const name of await readdir(dir)) {
    const path = join(dir, name);
    const st = await lstat(path).catch(() => undefined);
    if (!st) continue;
    if (st.isDirectory()) await restrictTree(path);
    else if (st.isFile()) await chmod(path, 0o600).catch(() => undefined);
  }
}

/**
 * For a directory another library writes into with its own modes (dynalite's LevelDB creates
 * 0644 files from a background thread, at any time): each new file is chmod-ed as it appears.
 * The directory itself is 0700, so no other user can open a file in the moment before.
 */
export async function keepOwnerOnly(dir: string): Promise<{ close(): Promise<void> }> {
  // Watching before the sweep: a file created during it is caught by one or the other.
  const watcher: FSWatcher = watch(dir, (event, name) => {
    // Only a new name ('rename': created or moved in) can carry a loose mode. A 'change' is a write
    // or an attribute change, our own chmod's included: answering those fed the watcher forever.
    // A file renamed or deleted in between is gone: nothing to protect.
    if (event === 'rename' && name) chmod(join(dir, name), 0o600).catch(() => undefined);
  });
  watcher.on('error', () => undefined);
  try {
    await restrictTree(dir);
  } catch (e) {
    watcher.close();
    throw e;
  }
  return {
    async close() {
      watcher.close();
      // Whatever appeared during the last event loop turns is tightened too.
      await restrictTree(dir).catch(() => undefined);
    },
  };
}

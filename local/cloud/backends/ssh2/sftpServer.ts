import { constants, type Stats } from 'node:fs';
import { mkdir, open, opendir, readdir, realpath, rename, rm, rmdir, stat, lstat, unlink, type FileHandle } from 'node:fs/promises';
import { join, posix } from 'node:path';
import ssh2, { type Attributes, type SFTPWrapper } from 'ssh2';
import type { ConnectionGuard } from './connectionGuard.ts';

// ssh2 is CommonJS whose `utils` Node's ESM loader cannot see as a named export.
const { utils } = ssh2;

const { STATUS_CODE, OPEN_MODE } = utils.sftp;

/**
 * Maps a client path into the VM home: relative paths are relative to the home and absolute
 * paths are taken as rooted at it (a chroot), and ".." can never climb above it. Symlinks
 * pointing out are refused when the path (or its parent, for a new file) is resolved.
 */
export async function resolveInside(root: string, clientPath: string): Promise<string> {
  const normal = posix.normalize(`/${clientPath}`);
  const target = join(root, normal);
  const realRoot = await realpath(root);
  let probe = target;
  for (;;) {
    try {
      const real = await realpath(probe);
      if (real !== realRoot && !real.startsWith(`${realRoot}/`)) throw new Error('path escapes the VM home');
      return target;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      const parent = join(probe, '..');
      if (parent === probe) throw e;
      probe = parent;
    }
  }
}

/** The path the client sees for a path inside the home. */
function clientView(root: string, path: string): string {
  const rel = path.slice(root.length);
  return rel === '' ? '/' : rel;
}

function attrsOf(s: Stats): Attributes {
  return { mode: s.mode, uid: s.uid, gid: s.gid, size: s.size, atime: Math.floor(s.atimeMs / 1000), mtime: Math.floor(s.mtimeMs / 1000) };
}

function openFlags(flags: number): number {
  let f = 0;
  const read = (flags & OPEN_MODE.READ) !== 0;
  const write = (flags & OPEN_MODE.WRITE) !== 0;
  f |= read && write ? constants.O_RDWR : write ? constants.O_WRONLY : constants.O_RDONLY;
  if (flags & OPEN_MODE.APPEND) f |= constants.O_APPEND;
  if (flags & OPEN_MODE.CREAT) f |= constants.O_CREAT;
  if (flags & OPEN_MODE.TRUNC) f |= constants.O_TRUNC;
  if (flags & OPEN_MODE.EXCL) f |= constants.O_EXCL;
  return f;
}

function statusOf(e: unknown): number {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return STATUS_CODE.NO_SUCH_FILE;
  if (code === 'EACCES' || code === 'EPERM') return STATUS_CODE.PERMISSION_DENIED;
  return STATUS_CODE.FAILURE;
}

type OpenHandle = { kind: 'file'; fh: FileHandle } | { kind: 'dir'; path: string; done: boolean };

/**
 * A small SFTP server rooted in the VM home: enough of the protocol for uploads (open, write,
 * mkdir, stat, realpath, rename, remove) and downloads or listings (read, readdir).
 */
export function serveSftp(sftp: SFTPWrapper, root: string, guard: ConnectionGuard): void {
  const handles = new Map<string, OpenHandle>();
  let nextHandle = 0;
  const newHandle = (h: OpenHandle): Buffer => {
    const id = Buffer.alloc(4);
    id.writeUInt32BE(nextHandle++);
    handles.set(id.toString('hex'), h);
    return id;
  };
  const handleOf = (b: Buffer) => handles.get(b.toString('hex'));

  const run = (reqId: number, task: () => Promise<void>) => {
    // An answer to a client that has gone throws inside ssh2: the guard keeps that to this connection.
    task().catch((e: unknown) => guard.run('answering sftp', () => sftp.status(reqId, statusOf(e), e instanceof Error ? e.message : String(e))));
  };

  sftp.on('REALPATH', (reqId, path) =>
    run(reqId, async () => {
      const full = await resolveInside(root, path);
      sftp.name(reqId, [{ filename: clientView(root, full), longname: clientView(root, full), attrs: {} as Attributes }]);
    }),
  );
  for (const event of ['STAT', 'LSTAT'] as const) {
    sftp.on(event, (reqId: number, path: string) =>
      run(reqId, async () => {
        const full = await resolveInside(root, path);
        sftp.attrs(reqId, attrsOf(event === 'STAT' ? await stat(full) : await lstat(full)));
      }),
    );
  }
  sftp.on('OPEN', (reqId, filename, flags, attrs) =>
    run(reqId, async () => {
      const full = await resolveInside(root, filename);
      const fh = await open(full, openFlags(flags), attrs.mode ?? 0o644);
      sftp.handle(reqId, newHandle({ kind: 'file', fh }));
    }),
  );
  sftp.on('WRITE', (reqId, handle, offset, data) =>
    run(reqId, async () => {
      const h = handleOf(handle);
      if (h?.kind !== 'file') return sftp.status(reqId, STATUS_CODE.FAILURE, 'bad handle');
      await h.fh.write(data, 0, data.length, offset);
      sftp.status(reqId, STATUS_CODE.OK);
    }),
  );
  sftp.on('READ', (reqId, handle, offset, length) =>
    run(reqId, async () => {
      const h = handleOf(handle);
      if (h?.kind !== 'file') return sftp.status(reqId, STATUS_CODE.FAILURE, 'bad handle');
      const buf = Buffer.alloc(length);
      const { bytesRead } = await h.fh.read(buf, 0, length, offset);
      if (bytesRead === 0) return sftp.status(reqId, STATUS_CODE.EOF);
      sftp.data(reqId, buf.subarray(0, bytesRead));
    }),
  );
  sftp.on('FSTAT', (reqId, handle) =>
    run(reqId, async () => {
      const h = handleOf(handle);
      if (h?.kind !== 'file') return sftp.status(reqId, STATUS_CODE.FAILURE, 'bad handle');
      sftp.attrs(reqId, attrsOf(await h.fh.stat()));
    }),
  );
  sftp.on('FSETSTAT', (reqId, handle, attrs) =>
    run(reqId, async () => {
      const h = handleOf(handle);
      if (h?.kind !== 'file') return sftp.status(reqId, STATUS_CODE.FAILURE, 'bad handle');
      if (attrs.mode !== undefined) await h.fh.chmod(attrs.mode & 0o7777);
      sftp.status(reqId, STATUS_CODE.OK);
    }),
  );
  sftp.on('SETSTAT', (reqId, path, attrs) =>
    run(reqId, async () => {
      const full = await resolveInside(root, path);
      const fh = await open(full, 'r');
      try {
        if (attrs.mode !== undefined) await fh.chmod(attrs.mode & 0o7777);
      } finally {
        await fh.close();
      }
      sftp.status(reqId, STATUS_CODE.OK);
    }),
  );
  sftp.on('CLOSE', (reqId, handle) =>
    run(reqId, async () => {
      const h = handleOf(handle);
      if (!h) return sftp.status(reqId, STATUS_CODE.FAILURE, 'bad handle');
      handles.delete(handle.toString('hex'));
      if (h.kind === 'file') await h.fh.close();
      sftp.status(reqId, STATUS_CODE.OK);
    }),
  );
  sftp.on('OPENDIR', (reqId, path) =>
    run(reqId, async () => {
      const full = await resolveInside(root, path);
      await (await opendir(full)).close();
      sftp.handle(reqId, newHandle({ kind: 'dir', path: full, done: false }));
    }),
  );
  sftp.on('READDIR', (reqId, handle) =>
    run(reqId, async () => {
      const h = handleOf(handle);
      if (h?.kind !== 'dir') return sftp.status(reqId, STATUS_CODE.FAILURE, 'bad handle');
      if (h.done) return sftp.status(reqId, STATUS_CODE.EOF);
      h.done = true;
      const names = await readdir(h.path);
      const entries = await Promise.all(
        names.map(async (filename) => ({ filename, longname: filename, attrs: attrsOf(await lstat(join(h.path, filename))) })),
      );
      sftp.name(reqId, entries);
    }),
  );
  sftp.on('MKDIR', (reqId, path, attrs) =>
    run(reqId, async () => {
      await mkdir(await resolveInside(root, path), { mode: attrs.mode ?? 0o755 });
      sftp.status(reqId, STATUS_CODE.OK);
    }),
  );
  sftp.on('REMOVE', (reqId, path) =>
    run(reqId, async () => {
      await unlink(await resolveInside(root, path));
      sftp.status(reqId, STATUS_CODE.OK);
    }),
  );
  sftp.on('RMDIR', (reqId, path) =>
    run(reqId, async () => {
      await rmdir(await resolveInside(root, path));
      sftp.status(reqId, STATUS_CODE.OK);
    }),
  );
  sftp.on('RENAME', (reqId, from, to) =>
    run(reqId, async () => {
      await rename(await resolveInside(root, from), await resolveInside(root, to));
      sftp.status(reqId, STATUS_CODE.OK);
    }),
  );
  sftp.on('close', () => {
    for (const h of handles.values()) if (h.kind === 'file') void h.fh.close().catch(() => undefined);
    handles.clear();
  });
}

/** Removes a directory tree (used when a VM is deleted). */
export async function removeTree(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true });
}

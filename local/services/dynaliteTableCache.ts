import { createRequire } from 'node:module';
import type { Server } from 'node:http';
import dynalite, { type DynaliteOptions } from 'dynalite';

/**
 * dynalite reads the table's description from LevelDB on every request (GetItem, Query,
 * UpdateItem...): one more LevelDB get, with a snapshot taken on the event loop under LevelDB's
 * lock, per DynamoDB call. This keeps the descriptions in memory in front of that store. It is
 * exact, not a guess that tables never change: every write of a description (CreateTable,
 * UpdateTable, DeleteTable and their status changes) goes through the same table store and drops
 * the entry, and each read hands out its own copy, as a LevelDB read would (UpdateTable mutates it).
 */

type Callback<T> = (err: Error | null | undefined, value?: T) => void;

/** dynalite's table store (db/index.js `tableDb`): LevelDB under a key prefix, callback style. */
interface TableStore {
  get(key: string, callback?: Callback<unknown>): unknown;
  put(key: string, value: unknown, callback?: Callback<void>): unknown;
  del(key: string, callback?: Callback<void>): unknown;
  batch(operations: { type: string; key: string }[], callback?: Callback<void>): unknown;
}

interface DynaliteDb {
  create(options: DynaliteOptions): { tableDb: TableStore };
}

const require = createRequire(import.meta.url);
// The module dynalite's index.js requires as './db': the same instance, so its `create` is the one dynalite calls.
const db = require('dynalite/db') as DynaliteDb;

/** Counts of what the cache answered, for tests and measurements. */
export interface TableCacheStats {
  hits: number;
  misses: number;
}

/** A dynalite server whose table descriptions are cached in front of LevelDB. */
export function dynaliteWithTableCache(options: DynaliteOptions): { server: Server; stats: TableCacheStats } {
  const stats: TableCacheStats = { hits: 0, misses: 0 };
  const create = db.create;
  // Only while this server's store is made: other dynalite servers in the process keep the plain store.
  db.create = (opts) => {
    const store = create(opts);
    cacheTables(store.tableDb, stats);
    return store;
  };
  try {
    return { server: dynalite(options), stats };
  } finally {
    db.create = create;
  }
}

function cacheTables(tables: TableStore, stats: TableCacheStats): void {
  const { get, put, del, batch } = { get: tables.get.bind(tables), put: tables.put.bind(tables), del: tables.del.bind(tables), batch: tables.batch.bind(tables) };
  /** Table name → its description as JSON (each hit parses its own copy). */
  const cached = new Map<string, string>();
  /** Bumped when a write of the key starts and ends: a read that overlapped a write is not kept. */
  const version = new Map<string, number>();
  const changed = (key: string) => {
    version.set(key, (version.get(key) ?? 0) + 1);
    cached.delete(key);
  };
  /** Runs a write, dropping its keys before it starts and again once it is done, in callback or promise style. */
  const write = (keys: string[], callback: Callback<void> | undefined, run: (callback?: Callback<void>) => unknown): unknown => {
    for (const key of keys) changed(key);
    const done = () => keys.forEach(changed);
    if (typeof callback !== 'function') return Promise.resolve(run()).finally(done);
    return run((err) => {
      done();
      callback(err);
    });
  };

  tables.get = (key, callback) => {
    if (typeof callback !== 'function') return get(key);
    const hit = cached.get(key);
    if (hit !== undefined) {
      stats.hits++;
      // Asynchronous like the LevelDB read it replaces: callers may rely on the callback coming later.
      process.nextTick(callback, null, JSON.parse(hit));
      return undefined;
    }
    stats.misses++;
    const seen = version.get(key) ?? 0;
    return get(key, (err, value) => {
      if (!err && value !== undefined && (version.get(key) ?? 0) === seen) cached.set(key, JSON.stringify(value));
      callback(err, value);
    });
  };
  tables.put = (key, value, callback) => write([key], callback, (cb) => put(key, value, cb));
  tables.del = (key, callback) => write([key], callback, (cb) => del(key, cb));
  tables.batch = (operations, callback) => write(operations.map((o) => o.key), callback, (cb) => batch(operations, cb));
}

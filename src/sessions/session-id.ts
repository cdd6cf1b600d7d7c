import { v7 as uuidv7 } from 'uuid';

/**
 * A new session's id: a UUIDv7, whose first 48 bits are the time it was made in milliseconds, the
 * rest random (and kept increasing within one millisecond).
 *
 * Conversations are indexed by session id first. A random id puts each new session's row on a
 * random page of that index, and every page a commit touches is written again: SQLite appends it
 * to its WAL and copies it back at the checkpoint, PostgreSQL dirties it in its B-tree. Ids made
 * close in time sort together, so a commit of new sessions' rows touches one or two of that
 * index's pages instead of one a row, and the sessions in use stay in the index's recent pages.
 * What the id gives away is when the session began, which its owner's history shows anyway.
 */
export function newSessionId(): string {
  return uuidv7();
}

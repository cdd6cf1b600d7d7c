import type { Knex } from 'knex';

/**
 * Migrations, compiled in rather than globbed from a folder, so the same list runs from src/
 * under vitest and from dist/ in production, on SQLite and PostgreSQL alike.
 */
interface Migration {
  up(knex: Knex): Promise<void>;
  down(knex: Knex): Promise<void>;
}

const migrations: Record<string, Migration> = {
  '001_conversations_and_memories': {
    async up(knex) {
      await knex.schema.createTable('conversations', (t) => {
        t.increments('id').primary();
        t.bigInteger('ts').notNullable().comment('request start, epoch milliseconds');
        t.string('session_id', 128).notNullable();
        t.text('prompt').notNullable();
        t.text('response').notNullable().defaultTo('');
        t.string('model', 200).notNullable();
        t.string('source', 32).notNullable().defaultTo('chat');
        t.boolean('reviewed').notNullable().defaultTo(false);
        t.string('correlation_id', 128).notNullable();
        t.string('trace_id', 32);
        t.integer('input_tokens');
        t.integer('output_tokens');
        t.integer('latency_ms');
        t.string('status', 16).notNullable().defaultTo('ok');
        t.string('error_code', 64);
      });
      // One composite index per way conversations are read: a session's history newest first,
      // recent chats across sessions, the review queue, and by source. Explicit DESC, which
      // knex's builder lacks.
      await knex.raw('CREATE INDEX conversations_session_ts_id ON conversations (session_id, ts DESC, id DESC)');
      await knex.raw('CREATE INDEX conversations_ts_session_id ON conversations (ts DESC, session_id, id DESC)');
      await knex.raw('CREATE INDEX conversations_reviewed_ts ON conversations (reviewed, ts DESC)');
      await knex.raw('CREATE INDEX conversations_source_ts ON conversations (source, ts DESC)');
      // Global keyset paging orders by (ts, id); the index above has session_id between them.
      await knex.raw('CREATE INDEX conversations_ts_id ON conversations (ts DESC, id DESC)');
      await knex.raw('CREATE INDEX conversations_correlation_id ON conversations (correlation_id)');

      await knex.schema.createTable('memories', (t) => {
        t.increments('id').primary();
        t.bigInteger('ts').notNullable();
        t.string('session_id', 128).notNullable();
        t.string('kind', 32).notNullable().defaultTo('note');
        t.text('content').notNullable();
        t.float('importance').notNullable().defaultTo(0);
      });
      await knex.raw('CREATE INDEX memories_session_ts ON memories (session_id, ts DESC)');
    },
    async down(knex) {
      await knex.schema.dropTableIfExists('memories');
      await knex.schema.dropTableIfExists('conversations');
    },
  },
  '002_conversations_cached': {
    async up(knex) {
      await knex.schema.alterTable('conversations', (t) => {
        t.boolean('cached').notNullable().defaultTo(false);
      });
    },
    async down(knex) {
      await knex.schema.alterTable('conversations', (t) => {
        t.dropColumn('cached');
      });
    },
  },
  '003_session_owners_and_summaries': {
    // A session belongs to the API key that made it: `owner` is the client id (a hash of the key,
    // never the key). `sessions` holds that claim and the summary of turns that left the context
    // window. Sessions that existed before owners did are claimed by nobody ('', admin-only).
    async up(knex) {
      await knex.schema.alterTable('conversations', (t) => {
        t.string('owner', 64);
      });
      await knex.raw('CREATE INDEX conversations_owner_ts_id ON conversations (owner, ts DESC, id DESC)');
      await knex.schema.createTable('sessions', (t) => {
        t.string('session_id', 128).primary();
        t.string('owner', 64).notNullable();
        t.bigInteger('created_ts').notNullable();
        t.text('summary');
        t.bigInteger('summary_through_ts');
        t.integer('summary_through_id');
        t.bigInteger('summary_ts');
      });
      await knex.raw(
        "INSERT INTO sessions (session_id, owner, created_ts) SELECT session_id, '', MIN(ts) FROM conversations GROUP BY session_id",
      );
    },
    async down(knex) {
      await knex.schema.dropTableIfExists('sessions');
      await knex.raw('DROP INDEX IF EXISTS conversations_owner_ts_id');
      await knex.schema.alterTable('conversations', (t) => {
        t.dropColumn('owner');
      });
    },
  },
  '004_conversations_backend': {
    async up(knex) {
      await knex.schema.alterTable('conversations', (t) => {
        t.string('backend', 64).comment("the LLM backend that answered: the primary's kind or <kind>-fallback<N>");
      });
    },
    async down(knex) {
      await knex.schema.alterTable('conversations', (t) => {
        t.dropColumn('backend');
      });
    },
  },
  '005_conversation_messages_and_tool_calls': {
    // `messages`: the whole conversation a /v1 client sent (JSON, bounded); `tool_calls`: the
    // turn's tool calls (JSON, bounded). Both null when there is nothing to keep.
    async up(knex) {
      await knex.schema.alterTable('conversations', (t) => {
        t.text('messages');
        t.text('tool_calls');
      });
    },
    async down(knex) {
      await knex.schema.alterTable('conversations', (t) => {
        t.dropColumn('tool_calls');
        t.dropColumn('messages');
      });
    },
  },
};

/** A knex migration source over the list above. */
export const migrationSource: Knex.MigrationSource<string> = {
  async getMigrations() {
    return Object.keys(migrations).sort();
  },
  getMigrationName(name) {
    return name;
  },
  async getMigration(name) {
    const m = migrations[name];
    if (!m) throw new Error(`unknown migration ${name}`);
    return m;
  },
};

/** Applies every pending migration; returns the names applied. */
export async function migrateLatest(knex: Knex): Promise<string[]> {
  const [, applied] = (await knex.migrate.latest({ migrationSource })) as [number, string[]];
  return applied;
}

/** Names of migrations not yet applied (empty when the schema is current). */
export async function pendingMigrations(knex: Knex): Promise<string[]> {
  const [, pending] = (await knex.migrate.list({ migrationSource })) as [unknown[], Array<string | { file: string }>];
  return pending.map((p) => (typeof p === 'string' ? p : p.file));
}

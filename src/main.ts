import { readEnvironment, formatReport, validateConfig } from './config/validate';
import { openDatabase } from './db/knex';
import { migrateLatest } from './db/migrations';
import { ConversationRepository } from './db/conversations';
import { StartFailed, startService } from './lifecycle';
import { verify } from './verify';
import { createLogger, type Logger } from './telemetry/logger';
import { tuneV8Tiering } from './v8-tiering';

const USAGE = `usage: vega <command> [options]

commands:
  server [--host HOST] [--port PORT]   run the service (the default)
  migrate                              apply pending database migrations and exit
  purge --days N (or --days=N)         delete conversations older than N days and exit
  verify                               check config, database, indexes, backend, integrations and
                                       telemetry; print a report; exit 1 if a check failed
`;

/** Exit codes: 0 ok, 1 runtime failure, 2 bad configuration or usage. */
export async function main(argv: readonly string[]): Promise<number | undefined> {
  const [command = 'server', ...rest] = argv;
  const flags = parseFlags(rest);
  if (flags === undefined || command === '--help' || command === 'help') {
    process.stderr.write(USAGE);
    return command === '--help' || command === 'help' ? 0 : 2;
  }
  const env = readEnvironment();
  if (flags.host !== undefined) env.HOST = flags.host;
  if (flags.port !== undefined) env.PORT = flags.port;

  switch (command) {
    case 'migrate': {
      const db = openDatabase(env.DATABASE_URL || 'sqlite:./data/vega.db');
      try {
        const applied = await migrateLatest(db.knex);
        process.stdout.write(`${JSON.stringify({ msg: 'migrations applied', applied })}\n`);
        return 0;
      } finally {
        await db.knex.destroy();
      }
    }
    case 'purge': {
      const days = Number(flags.days);
      if (!(days > 0)) {
        process.stderr.write('purge needs --days N with N > 0\n');
        return 2;
      }
      const db = openDatabase(env.DATABASE_URL || 'sqlite:./data/vega.db');
      try {
        await migrateLatest(db.knex); // as the server does: a fresh database has no table to purge yet
        const deleted = await new ConversationRepository(db.knex).purgeOld(days);
        process.stdout.write(`${JSON.stringify({ msg: 'purged old conversations', days, deleted })}\n`);
        return 0;
      } finally {
        await db.knex.destroy();
      }
    }
    case 'verify':
      return verify(env, (line) => process.stderr.write(`${line}\n`));
    case 'server':
      return runServer(env);
    default:
      process.stderr.write(`unknown command '${command}'\n${USAGE}`);
      return 2;
  }
}

async function runServer(env: Record<string, string | undefined>): Promise<number | undefined> {
  const report = validateConfig(env);
  if (!report.valid || !report.config) {
    process.stderr.write(`❌ Configuration is invalid:\n${formatReport(report)}\n`);
    process.stdout.write(
      `${JSON.stringify({ level: 'fatal', time: new Date().toISOString(), msg: 'invalid configuration', errors: report.errors })}\n`,
    );
    return 2;
  }
  const logger = createLogger(report.config.logLevel);
  routeWarningsToLog(logger);
  // Before the first request: the chat path is compiled by V8's optimizing tier early in a run.
  const tiering = tuneV8Tiering(report.config.v8TurbofanAfterCalls);
  if ('flag' in tiering)
    logger.info({ v8_flags: [tiering.flag] }, `V8: optimizing compiler after ${report.config.v8TurbofanAfterCalls} calls`);
  else if (tiering.skipped === 'command_line') logger.info("V8: node's command line sets the optimizing compiler's threshold");
  else if (tiering.skipped === 'node_version' && env.V8_TURBOFAN_AFTER_CALLS?.trim())
    logger.warn({ node: process.version }, 'V8_TURBOFAN_AFTER_CALLS applies on Node 24 and later; V8 keeps its own tiering');
  for (const w of report.warnings) logger.warn({ variable: w.variable }, `config: ${w.variable} ${w.message}`);
  let service;
  try {
    service = await startService(report.config, report, logger);
  } catch (err) {
    if (!(err instanceof StartFailed)) throw err;
    // A designed failure: one line naming the cause, no stack; everything started was stopped.
    logger.fatal(
      { step: err.step, code: err.code, port: err.step === 'listen' ? report.config.port : undefined },
      `start failed: ${err.message}`,
    );
    return 1;
  }

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    if (++signals > 1) {
      logger.warn({ signal }, 'shutdown already in progress');
      return;
    }
    void service.shutdown(signal).then((code) => process.exit(code));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('unhandledRejection', (reason) => logger.error({ err: reason }, 'unhandled promise rejection'));
  return undefined; // keep running until a signal
}

/**
 * Node prints process warnings (deprecations, MaxListenersExceededWarning, ...) to stderr as raw
 * text, which log collectors cannot parse: replace its printer with a JSON warn line.
 */
function routeWarningsToLog(logger: Logger): void {
  process.removeAllListeners('warning');
  process.on('warning', (w: Error & { code?: string }) => {
    logger.warn({ warning: { name: w.name, code: w.code, message: w.message } }, `process warning: ${w.name}`);
  });
}

function parseFlags(args: readonly string[]): { host?: string; port?: string; days?: string } | undefined {
  const out: { host?: string; port?: string; days?: string } = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const value = args[i + 1];
    const inline = /^--(host|port|days)=(.*)$/.exec(a ?? '');
    if (inline) {
      out[inline[1] as 'host' | 'port' | 'days'] = inline[2];
    } else if ((a === '--host' || a === '--port' || a === '--days') && value !== undefined) {
      out[a.slice(2) as 'host' | 'port' | 'days'] = value;
      i++;
    } else {
      return undefined;
    }
  }
  return out;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      if (code !== undefined) process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`vega: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}

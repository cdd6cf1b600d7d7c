import type { Dispatcher } from 'undici';
import { lines } from './upstream-call';

/**
 * The `data:` payloads of a server-sent event stream (what OpenAI-compatible servers and TGI
 * send), one per event; comments and other fields are skipped. Multi-line data is joined.
 */
export async function* sseData(body: Dispatcher.ResponseData['body']): AsyncGenerator<string> {
  let data: string[] = [];
  for await (const line of lines(body)) {
    if (line.startsWith('data:')) {
      data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
      // Servers send one data line per event; yield at once rather than wait for the blank line,
      // which lines() drops.
      yield data.join('\n');
      data = [];
    }
  }
  if (data.length > 0) yield data.join('\n');
}

import type { Dispatcher } from 'undici';

/**
 * Drops a response body nobody will read. undici reports the destroy of an unfinished body as an
 * `error` event (RequestAbortedError); with no listener that event kills the process, so one is
 * attached first. Found by the chaos suite: an HTML answer from the backend crashed Vega.
 */
export function discardBody(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => undefined);
  if (!body.destroyed) body.destroy();
}

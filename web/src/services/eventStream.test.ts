import { describe, expect, it } from 'vitest';

import { EventStreamParser, type ServerEvent, readEventStream } from './eventStream';

function parse(chunks: string[]): ServerEvent[] {
  const events: ServerEvent[] = [];
  const parser = new EventStreamParser((event) => events.push(event));
  for (const chunk of chunks) parser.push(chunk);
  return events;
}

describe('EventStreamParser', () => {
  it('reads named events and skips heartbeat comments', () => {
    expect(parse([':heartbeat\n\nevent: balance\ndata: {"balance_cents":5}\n\n'])).toEqual([
      { event: 'balance', data: '{"balance_cents":5}' },
    ]);
  });

  it('gives the same events whatever the chunking and line ends', () => {
    const text = 'event: balance\r\ndata: {"a":1}\r\n\r\nevent: balance\ndata: {"a":2}\n\n';
    const whole = parse([text]);
    expect(whole).toHaveLength(2);
    for (let cut = 1; cut < text.length; cut++) {
      expect(parse([text.slice(0, cut), text.slice(cut)])).toEqual(whole);
    }
    expect(parse([...text])).toEqual(whole);
  });

  it('joins data lines, defaults the name to message, and waits for the blank line', () => {
    expect(parse(['data: one\ndata: two\n\n', 'data: unfinished\n'])).toEqual([{ event: 'message', data: 'one\ntwo' }]);
  });
});

describe('readEventStream', () => {
  it('reads a fetch body to its end, across UTF-8 split between chunks', async () => {
    const bytes = new TextEncoder().encode('event: balance\ndata: "€"\n\n');
    const euro = bytes.indexOf(0xe2);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(bytes.slice(0, euro + 1));
        controller.enqueue(bytes.slice(euro + 1));
        controller.close();
      },
    });
    const events: ServerEvent[] = [];
    await readEventStream(body, (event) => events.push(event));
    expect(events).toEqual([{ event: 'balance', data: '"€"' }]);
  });
});

/** The client's Server-Sent Events reader on bodies cut anywhere: line ends of every kind, comments, multi-line data. */
import { describe, expect, it } from "vitest";
import { readSse } from "../../src/client/sse.js";

function body(chunks: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(encoder.encode(chunk));
      controller.close();
    },
  });
}

async function read(chunks: string[]) {
  const events = [];
  for await (const event of readSse(body(chunks))) events.push(event);
  return events;
}

describe("readSse", () => {
  const text =
    ': open\nid: 3\n\nevent: message\ndata: {"a":1}\nid: 7\n\n: keep-alive\n\nevent: info\ndata: x\ndata: y\n\n';
  const expected = [
    { event: "message", data: undefined, id: "3" },
    { event: "message", data: '{"a":1}', id: "7" },
    { event: "info", data: "x\ny", id: undefined },
  ];

  it("reads events and skips comments, however the body is cut", async () => {
    for (let cut = 0; cut <= text.length; cut++) {
      expect(await read([text.slice(0, cut), text.slice(cut)])).toEqual(expected);
    }
  });

  it("takes CRLF and CR line ends, split between chunks too", async () => {
    const crlf = text.replace(/\n/g, "\r\n");
    for (let cut = 0; cut <= crlf.length; cut++) {
      expect(await read([crlf.slice(0, cut), crlf.slice(cut)])).toEqual(expected);
    }
    expect(await read([text.replace(/\n/g, "\r")])).toEqual(expected);
  });

  it("reads a body cut into single characters, with every kind of line end", async () => {
    for (const ending of ["\n", "\r\n", "\r"]) {
      const cut = text.replace(/\n/g, ending).split("");
      expect(await read(cut)).toEqual(expected);
    }
  });

  it("drops an event the body ends in the middle of", async () => {
    expect(await read(['event: message\ndata: {"a":1}\nid: 7\n'])).toEqual([]);
  });
});

/**
 * Rule 2 (ordering) on real Postgres: every stored message of a conversation, application or commit, gets the
 * next seq from 1 with no gap and no duplicate under concurrency, and createdAt never decreases as seq grows,
 * even when the server's clock steps back.
 */
import { afterAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock.js";
import { testApp, testDatabase, unique } from "../helpers/context.js";
import { TestGroup } from "../helpers/mls.js";
import type { Answer, Output } from "mls-delivery-service/client";
import { Api, base64, expectNonDecreasing, range, storedMessages, utf8 } from "./client.js";

const db = testDatabase();
afterAll(() => db.close());

const seqs = (answers: Answer<Output<"sendMessage">>[]) => answers.map((answer) => answer.data.seq);

describe("message ordering", () => {
  it("gives 5 senders × 40 concurrent messages the seqs 1..200 exactly once, createdAt never decreasing", async () => {
    const api = new Api(testApp(db).app);
    const senders = Array.from({ length: 5 }, () => unique("did:plc:sender"));
    const convoId = await api.createConvo(senders[0]!, senders.slice(1));

    const sent = senders.flatMap((sender) => range(1, 40).map((n) => ({ sender, text: `${sender} #${n}` })));
    const replies = await Promise.all(
      sent.map(({ sender, text }) => api.as(sender).sendMessage({ convoId, ciphertext: utf8(text), epoch: 0 })),
    );

    for (const reply of replies) expect(reply.status).toBe(200);
    expect(new Set(seqs(replies)).size).toBe(200);
    expect(seqs(replies).sort((a, b) => a - b)).toEqual(range(1, 200));

    const rows = await storedMessages(db, convoId);
    expect(rows.map((row) => row.seq)).toEqual(range(1, 200));
    expectNonDecreasing(rows.map((row) => row.created_at));
    // Each answer names the row holding exactly what that request sent.
    const byId = new Map(rows.map((row) => [row.id, row]));
    replies.forEach((reply, i) => {
      const row = byId.get(reply.data.messageId)!;
      expect(row.seq).toBe(reply.data.seq);
      expect(row.sender_did).toBe(sent[i]!.sender);
      expect(Buffer.from(row.ciphertext).toString()).toBe(sent[i]!.text);
      expect(row.message_type).toBe("app");
      expect(reply.data.receivedAt).toBe(row.created_at.toISOString());
    });
  });

  it("keeps createdAt non-decreasing when the clock steps back between sends", async () => {
    const clock = new ManualClock();
    const api = new Api(testApp(db, {}, clock).app);
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    const convoId = await api.createConvo(alice, [bob]);
    const send = (sender: string) => api.as(sender).sendMessage({ convoId, ciphertext: utf8("hi"), epoch: 0 });

    const first = await send(alice);
    for (let step = 0; step < 5; step++) {
      clock.advance(-60_000);
      expect((await send(step % 2 ? alice : bob)).status).toBe(200);
    }
    // A batch sent concurrently after another step back.
    clock.advance(-60_000);
    for (const reply of await Promise.all(range(1, 20).map((n) => send(n % 2 ? alice : bob)))) {
      expect(reply.status).toBe(200);
    }

    const rows = await storedMessages(db, convoId);
    expect(rows.map((row) => row.seq)).toEqual(range(1, 26));
    expectNonDecreasing(rows.map((row) => row.created_at));
    // The clock is six minutes behind the first message: every later one carries the first one's time.
    expect(new Set(rows.map((row) => row.created_at.getTime()))).toEqual(new Set([Date.parse(first.data.receivedAt)]));

    clock.advance(10 * 60_000);
    const later = await send(bob);
    expect(later.data.seq).toBe(27);
    expect(Date.parse(later.data.receivedAt)).toBeGreaterThan(Date.parse(first.data.receivedAt));
  });

  it("gives commits from addMembers a seq in the same sequence as concurrent application messages", async () => {
    const clock = new ManualClock();
    const api = new Api(testApp(db, {}, clock).app);
    const alice = unique("did:plc:alice");
    const bob = unique("did:plc:bob");
    const group = await TestGroup.create({ creatorDid: alice });
    const convoId = await api.createConvo(alice, [bob], { groupId: group.groupIdHex });
    const pending = await group.commits(5);

    // Five commits one after another (epochs 0..4), each stepping the clock back, while 40 messages race them.
    const commits = (async () => {
      const replies: Answer<Output<"addMembers">>[] = [];
      for (const [epoch, commit] of pending.entries()) {
        clock.advance(-60_000);
        const reply = await api.as(alice).addMembers({ convoId, didList: [unique("did:plc:new")], commit, epoch });
        expect(reply.status).toBe(200);
        expect(reply.data).toEqual({ success: true, newEpoch: epoch + 1 });
        replies.push(reply);
      }
      return replies;
    })();
    const messages = Promise.all(
      range(1, 40).map((n) =>
        api.as(n % 2 ? alice : bob).sendMessage({ convoId, ciphertext: utf8(`message ${n}`), epoch: 0 }),
      ),
    );
    await commits;
    for (const reply of await messages) expect(reply.status).toBe(200);

    const rows = await storedMessages(db, convoId);
    expect(rows.map((row) => row.seq)).toEqual(range(1, 45));
    expectNonDecreasing(rows.map((row) => row.created_at));
    const commitRows = rows.filter((row) => row.message_type === "commit");
    expect(commitRows.map((row) => row.epoch)).toEqual([0, 1, 2, 3, 4]);
    expect(commitRows.map((row) => base64(row.ciphertext))).toEqual(pending.map((commit) => base64(commit)));
    expect(commitRows.every((row) => row.sender_did === alice)).toBe(true);

    // getMessages shows the same interleaving, commits included.
    const page = await api.as(bob).getMessages({ convoId, limit: 100 });
    expect(page.status).toBe(200);
    expect(page.data.messages.map((m) => [m.seq, m.messageType])).toEqual(
      rows.map((row) => [row.seq, row.message_type]),
    );
  });
});

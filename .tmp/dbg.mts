import { createPostgresDatabase } from "/work/main/src/db/postgres.js";
import { createConvo } from "/work/main/src/services/conversations.js";
const db = createPostgresDatabase("postgres://postgres@127.0.0.1:5432/scratch");
await db.exec((await import("node:fs")).readFileSync("/work/main/db/migrations/0001_schema.sql","utf8")).catch(e=>console.log("mig", e.message));
try { console.log(await createConvo(db, {id: crypto.randomUUID(), groupId: "ab"+Date.now().toString(16).padStart(12,"0"), creator:"did:plc:a", cipherSuite:"x", members:["did:plc:b"], welcome: new Uint8Array([1,2]), keyPackageHashes: new Map(), now: new Date()})); } catch(e) { console.log(e) }
await db.close();

/**
 * A battle (test/battle/fixtures.ts) for the devices tests: its DIDs' device rows are removed with the rest of its data.
 */
import { onTestFinished } from "vitest";
import type { Queryable } from "../../src/db/driver.js";
import { enterBattle, type Battle } from "../battle/fixtures.js";

export async function enterDevicesBattle(db: Queryable, kind: string): Promise<Battle> {
  const battle = await enterBattle(db, kind);
  const removeDevices = () =>
    db.query(`DELETE FROM devices WHERE left(did, length($1)) = $1`, [`did:plc:${battle.prefix}-`]).then(() => {});
  await removeDevices();
  onTestFinished(removeDevices);
  return battle;
}

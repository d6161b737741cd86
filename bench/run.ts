/**
 * Flowmesh benchmark: `npm run bench` (builds, then runs `node dist/bench/run.js`).
 *
 * Runs each selected target (bench/targets.ts) through the selected scenarios
 * (bench/scenarios/), prints a table and writes bench/results/latest.json. The targets,
 * the method, every environment variable and every key of the results are documented in
 * bench/README.md.
 *
 * Exit code: 0 when every scenario of every target ran clean (goals missed or not), 1 otherwise.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { type TargetFigures, failer, newFigures } from "./harness/figures";
import { chosenGenerator } from "./harness/generator";
import { ROOT, stopEverything } from "./harness/processes";
import { printTable } from "./harness/report";
import { buildJson } from "./harness/results-json";
import { CONNECTIONS, DURATION_S, envList, NATS_GOMAXPROCS, PIPELINING, RESTART_FLOWS, ROUND_S, ROUNDS, WARMUP_S } from "./harness/settings";
import { runFailover } from "./scenarios/failover";
import { runGet } from "./scenarios/get";
import { runHandoff } from "./scenarios/handoff";
import { runMemory } from "./scenarios/memory";
import { queriesVsEmbedded, runQueries } from "./scenarios/queries";
import { runRestart } from "./scenarios/restart";
import { ratioVsMemoryTwin, runThroughput } from "./scenarios/throughput";
import { OWN_SCENARIOS, type Running, type Target, TARGETS, withTarget } from "./targets";

/** The scenarios BENCH_SCENARIOS may name, and those run when it is unset ("restart" and "queries" are long: only when named). */
const SCENARIOS = ["throughput", "get", "memory", "handoff", "failover", "restart", "queries"];
const DEFAULT_SCENARIOS = ["throughput", "get", "memory", "handoff", "failover"];

// Children are killed and the data directories removed when the bench ends, fails, or gets a signal.
for (const [signal, number] of [["SIGINT", 2], ["SIGTERM", 15], ["SIGHUP", 1]] as const) {
  process.on(signal, () => {
    console.error(`\nbench: ${signal}, stopping children`);
    stopEverything();
    process.exit(128 + number);
  });
}
for (const event of ["uncaughtException", "unhandledRejection"] as const) {
  process.on(event, (err) => {
    console.error(`bench: ${event === "uncaughtException" ? "uncaught exception" : "unhandled rejection"}:`, err);
    stopEverything();
    process.exit(1);
  });
}

/**
 * One target through the scenarios. Throughput, GET and queries share an instance (queries
 * after the other two: its hours are clear of theirs); memory gets a fresh one (which the
 * handoff reuses when memory ran clean: it then holds exactly the 1M flows); failover and
 * restart each start their own.
 */
async function benchTarget(target: Target, scenarios: string[]): Promise<TargetFigures> {
  const figures = newFigures(target, scenarios);
  const fail = failer(target, figures);
  const wants = (scenario: string): boolean => scenarios.includes(scenario) && (!OWN_SCENARIOS.includes(scenario) || target.ownScenarios.includes(scenario));

  let startFailed = false;
  console.log(`\n== ${target.title} (${target.key})`);
  if (wants("throughput") || wants("get") || wants("queries")) {
    try {
      await withTarget(target, figures, ["throughput", "get", "queries"].filter(wants).join(" + "), async (running) => {
        if (wants("throughput")) await runThroughput(running, target, figures, fail);
        if (wants("get")) await runGet(running, target, figures, fail);
        if (wants("queries")) {
          try {
            await runQueries(running, target, figures);
          } catch (err) {
            fail("queries", err);
          }
        }
      });
    } catch (err) {
      startFailed = true;
      fail("start", err);
    }
  }
  /** Later scenarios are not tried when the target did not even start for the first ones. */
  const skipped = (scenario: string): boolean => {
    if (startFailed) figures.flagged.push(`${scenario} skipped: the target did not start`);
    return startFailed;
  };

  let handoffDone = false;
  const handoff = async (running: Running, loaded: boolean): Promise<void> => {
    handoffDone = true;
    await runHandoff(running, target, figures, fail, loaded);
  };
  if (wants("memory") && !skipped("memory")) {
    try {
      await withTarget(target, figures, wants("handoff") ? "memory + handoff" : "memory", async (running) => {
        const clean = await runMemory(running, target, figures);
        if (wants("handoff") && clean) await handoff(running, true);
      });
    } catch (err) {
      fail("memory", err);
    }
  }
  if (wants("handoff") && !handoffDone && !skipped("handoff")) {
    try {
      await withTarget(target, figures, "handoff", (running) => handoff(running, false));
    } catch (err) {
      fail("handoff", err);
    }
  }
  if (wants("failover") && !skipped("failover")) await runFailover(target, figures, fail);
  if (wants("restart") && !skipped("restart")) await runRestart(target, figures, fail);
  return figures;
}

async function main(): Promise<number> {
  const targetKeys = envList("BENCH_TARGETS", TARGETS.map((t) => t.key));
  const scenarios = envList("BENCH_SCENARIOS", SCENARIOS, DEFAULT_SCENARIOS);
  const targets = TARGETS.filter((t) => targetKeys.includes(t.key));
  console.log(
    `flowmesh bench: targets ${targets.map((t) => t.key).join(", ")}; scenarios ${scenarios.join(", ")}; ` +
      `${CONNECTIONS} connections, pipelining ${PIPELINING}, load generator ${chosenGenerator().name}; throughput: reference ${WARMUP_S} s warm-up + ${DURATION_S} s, ` +
      `other targets ${WARMUP_S} s warm-up + ${ROUNDS} paired rounds of ${ROUND_S} s against a reference server of their own; ` +
      `${os.cpus().length} CPUs, node ${process.version}; clusters' nats-server GOMAXPROCS=${NATS_GOMAXPROCS === "0" ? "(Go's default)" : NATS_GOMAXPROCS}` +
      (scenarios.includes("restart") ? `; restart: ${RESTART_FLOWS.toLocaleString("en-US")} flows` : ""),
  );
  const generatorNote = chosenGenerator().note;
  if (generatorNote !== null && scenarios.includes("throughput")) console.log(`note: ${generatorNote}`);
  for (const scenario of OWN_SCENARIOS) {
    if (scenarios.includes(scenario) && !targets.some((t) => t.ownScenarios.includes(scenario))) {
      const runners = TARGETS.filter((t) => t.ownScenarios.includes(scenario)).map((t) => t.key);
      console.log(`note: scenario "${scenario}" runs only with target ${runners.join(" or ")}, which is not selected`);
    }
  }

  const results = new Map<string, TargetFigures>();
  for (const target of targets) results.set(target.key, await benchTarget(target, scenarios));
  for (const target of targets) {
    if (target.memoryTwin !== undefined) ratioVsMemoryTwin(target, results.get(target.key)!, results.get(target.memoryTwin));
    if (target.isCluster) queriesVsEmbedded(target, results.get(target.key)!, results.get("embedded"));
  }

  printTable(targets, results);
  const json = buildJson(targets, scenarios, results);
  const outFile = path.resolve(process.env.BENCH_OUT ?? path.join(ROOT, "bench", "results", "latest.json"));
  fs.mkdirSync(path.dirname(outFile), { recursive: true });
  fs.writeFileSync(outFile, JSON.stringify(json, null, 2) + "\n");
  console.log(`\nwrote ${path.relative(process.cwd(), outFile) || outFile}`);
  return [...results.values()].some((f) => f.flagged.length > 0) ? 1 : 0;
}

main().then(
  (code) => {
    stopEverything();
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error("bench failed:", err);
    stopEverything();
    process.exit(1);
  },
);

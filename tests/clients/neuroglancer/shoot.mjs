// Opens a Neuroglancer viewer URL in Debian's Chromium (driven by playwright-core), waits until the
// data it shows have loaded, takes a screenshot, and prints a JSON report on stdout.
//
//   node shoot.mjs --url http://127.0.0.1:PORT/v/TOKEN/ --out shot.png [--report shot.json]
//                  [--width 1200] [--height 640] [--timeout 120] [--sentinel ff00ff]
//                  [--chromium /usr/bin/chromium]
//
// "Loaded" means: every layer's data sources are loaded (or failed: the report says so), the
// viewer says it is ready, every chunk source has visible chunks and none of them is still
// queued or downloading (all are on the GPU or failed), no HTTP request is in flight, and two
// screenshots taken 500 ms apart are identical. The report has:
//   ready, reason       whether that happened before --timeout, and if not what was still missing
//   requests            every request (the page's and its workers'): url, method, type, status,
//                       failure, content type and encoding, start and end in ms
//   failed              requests with status >= 400 or a network error (aborted ones are apart)
//   aborted             requests that Neuroglancer cancelled itself (net::ERR_ABORTED)
//   console             console messages of the page and of its workers, and uncaught errors
//   errors              the part of `console` that is an error (type error, or pageerror)
//   layers              each layer: name, type, and each data source's load state and subsources
//   chunkSources        Neuroglancer's chunk statistics per chunk source (what the statistics
//                       panel shows): visible chunks total, downloading, on GPU, failed, and the
//                       source's parameters and chunk size
//   panels              each rendered data panel: its rectangle, the layers of its layer group,
//                       and pixel statistics of the screenshot there (fraction of the sentinel
//                       background colour, distinct colours, share of the most common colour,
//                       mean and standard deviation of luminance)
// Exit status: 0 when the report was written (whatever it says), 2 on a usage or browser error.

import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

function parseArgs(argv) {
  const opts = {
    width: 1200,
    height: 640,
    timeout: 120,
    sentinel: "ff00ff",
    chromium: process.env.CHROMIUM || "/usr/bin/chromium",
  };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i];
    const value = argv[i + 1];
    if (!key.startsWith("--") || value === undefined) {
      throw new Error(`bad argument ${key}`);
    }
    opts[key.slice(2)] = value;
  }
  if (!opts.url || !opts.out) throw new Error("--url and --out are required");
  opts.width = Number(opts.width);
  opts.height = Number(opts.height);
  opts.timeout = Number(opts.timeout);
  return opts;
}

const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-dev-shm-usage",
  // WebGL2 on the CPU: Chromium's SwiftShader through ANGLE (Neuroglancer needs WebGL2).
  "--use-angle=swiftshader",
  "--enable-unsafe-swiftshader",
];

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Runs in the page: layer load states, chunk statistics per chunk source, viewer readiness.
async function pageState() {
  const viewer = window.viewer;
  if (viewer === undefined) return { viewer: false };
  const text = (e) => (e === undefined ? undefined : String(e?.message ?? e));
  const layers = viewer.layerManager.managedLayers.map((ml) => {
    const layer = ml.layer;
    return {
      name: ml.name,
      type: layer ? layer.type : null,
      ready: Boolean(ml.isReady()),
      sources: (layer ? layer.dataSources : []).map((ds) => {
        const ls = ds.loadState;
        return {
          url: ds.spec ? ds.spec.url : undefined,
          state: ls === undefined ? "loading" : ls.error !== undefined ? "error" : "loaded",
          error: ls && ls.error !== undefined ? text(ls.error) : undefined,
          // What the source offers (for DVID: "default", "meshes", "skeletons", "bounds"), whether
          // each is on by default, and whether this layer enabled it.
          subsources:
            ls && ls.error === undefined && ls.subsources
              ? ls.subsources.map((sub) => ({
                  id: sub.subsourceEntry.id,
                  default: Boolean(sub.subsourceEntry.default),
                  enabled: Boolean(sub.enabled),
                }))
              : undefined,
        };
      }),
    };
  });
  // Indices as in chunk_manager/base.ts: ((state * 3 + tier) * 3 + memoryStatistic), with the
  // states GPU_MEMORY 0, SYSTEM_MEMORY 1, SYSTEM_MEMORY_WORKER 2, DOWNLOADING 3, QUEUED 4, NEW 5,
  // FAILED 6, EXPIRED 7; tier VISIBLE 0; memory statistic numChunks 0.
  const at = (st, state) => st[(state * 3 + 0) * 3 + 0];
  const plain = (x) =>
    JSON.parse(
      JSON.stringify(x, (_k, v) =>
        ArrayBuffer.isView(v) ? Array.from(v) : typeof v === "bigint" ? String(v) : v,
      ),
    );
  const chunkSources = [];
  const stats = await viewer.chunkQueueManager.getStatistics();
  for (const [source, st] of stats) {
    let total = 0;
    for (let s = 0; s < 8; ++s) total += at(st, s);
    const spec = source.spec;
    chunkSources.push({
      type: source.RPC_TYPE_ID,
      parameters: source.parameters ? plain(source.parameters) : undefined,
      chunkDataSize: spec && spec.chunkDataSize ? Array.from(spec.chunkDataSize) : undefined,
      upperVoxelBound: spec && spec.upperVoxelBound ? Array.from(spec.upperVoxelBound) : undefined,
      visibleTotal: total,
      visibleGpu: at(st, 0),
      visibleSystemMemory: at(st, 1) + at(st, 2),
      visibleDownloading: at(st, 3),
      visibleQueued: at(st, 4) + at(st, 5),
      visibleFailed: at(st, 6),
      downloadedChunks: st[8 * 3 * 3 + 1],
      downloadTimeMs: st[8 * 3 * 3 + 0],
    });
  }
  return { viewer: true, viewerReady: Boolean(viewer.isReady()), layers, chunkSources };
}

// Runs in the page: rectangles of the rendered data panels and the layers of their layer groups.
function pagePanels() {
  return Array.from(document.querySelectorAll(".neuroglancer-rendered-data-panel")).map((el) => {
    const r = el.getBoundingClientRect();
    const group = el.closest(".neuroglancer-layer-group-viewer");
    const layers = group
      ? Array.from(group.querySelectorAll(".neuroglancer-layer-item-label")).map((e) => e.textContent)
      : [];
    return { x: r.x, y: r.y, width: r.width, height: r.height, layers };
  });
}

// Runs in the page: pixel statistics of the screenshot (a PNG, base64) inside each rectangle.
async function pagePixelStats({ png, rects, sentinel, inset }) {
  const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
  const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const [sr, sg, sb] = [0, 2, 4].map((i) => parseInt(sentinel.slice(i, i + 2), 16));
  return rects.map((r) => {
    const x0 = Math.max(0, Math.ceil(r.x) + inset);
    const y0 = Math.max(0, Math.ceil(r.y) + inset);
    const x1 = Math.min(bitmap.width, Math.floor(r.x + r.width) - inset);
    const y1 = Math.min(bitmap.height, Math.floor(r.y + r.height) - inset);
    if (x1 <= x0 || y1 <= y0) return { pixels: 0 };
    const data = ctx.getImageData(x0, y0, x1 - x0, y1 - y0).data;
    const counts = new Map();
    let sentinelCount = 0;
    let sum = 0;
    let sum2 = 0;
    const n = data.length / 4;
    for (let i = 0; i < data.length; i += 4) {
      const red = data[i];
      const green = data[i + 1];
      const blue = data[i + 2];
      if (Math.abs(red - sr) <= 16 && Math.abs(green - sg) <= 16 && Math.abs(blue - sb) <= 16) {
        ++sentinelCount;
      }
      const key = (red << 16) | (green << 8) | blue;
      counts.set(key, (counts.get(key) || 0) + 1);
      const luma = 0.299 * red + 0.587 * green + 0.114 * blue;
      sum += luma;
      sum2 += luma * luma;
    }
    let dominant = 0;
    let dominantKey = 0;
    for (const [key, count] of counts) {
      if (count > dominant) {
        dominant = count;
        dominantKey = key;
      }
    }
    const mean = sum / n;
    return {
      crop: [x0, y0, x1 - x0, y1 - y0],
      pixels: n,
      sentinelFraction: sentinelCount / n,
      distinctColours: counts.size,
      dominantColour: "#" + dominantKey.toString(16).padStart(6, "0"),
      dominantFraction: dominant / n,
      lumaMean: mean,
      lumaStd: Math.sqrt(Math.max(0, sum2 / n - mean * mean)),
    };
  });
}

function notReadyReason(state, inFlight) {
  if (!state.viewer) return "no window.viewer yet";
  const loading = [];
  for (const layer of state.layers) {
    for (const s of layer.sources) if (s.state === "loading") loading.push(`${layer.name}: ${s.url}`);
  }
  if (state.layers.length === 0) return "no layers";
  if (loading.length) return `data sources loading: ${loading.join(", ")}`;
  const volumes = state.chunkSources.filter((s) => s.visibleTotal > 0);
  if (volumes.length === 0) return "no chunk source has visible chunks";
  for (const s of state.chunkSources) {
    if (s.visibleDownloading || s.visibleQueued || s.visibleSystemMemory) {
      return `chunks pending in ${JSON.stringify(s.parameters)}: ${s.visibleDownloading} downloading, ${s.visibleQueued} queued, ${s.visibleSystemMemory} in system memory`;
    }
  }
  if (!state.viewerReady) return "viewer.isReady() is false";
  if (inFlight.length) return `${inFlight.length} requests in flight, e.g. ${inFlight[0].url}`;
  return null;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "dvid-ng-chromium-"));
  const requests = [];
  const byRequest = new Map();
  const consoleMessages = [];
  const workers = [];
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: opts.chromium,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: opts.width, height: opts.height },
      deviceScaleFactor: 1,
    });
    const at = () => Date.now() - started;
    context.on("request", (req) => {
      const rec = { url: req.url(), method: req.method(), type: req.resourceType(), status: null, failure: null, done: false, startMs: at() };
      byRequest.set(req, rec);
      requests.push(rec);
    });
    context.on("response", (res) => {
      const rec = byRequest.get(res.request());
      if (rec) {
        rec.status = res.status();
        const h = res.headers();
        rec.contentType = h["content-type"];
        rec.contentEncoding = h["content-encoding"];
      }
    });
    context.on("requestfinished", (req) => {
      const rec = byRequest.get(req);
      if (rec) {
        rec.done = true;
        rec.endMs = at();
      }
    });
    context.on("requestfailed", (req) => {
      const rec = byRequest.get(req);
      if (rec) {
        rec.done = true;
        rec.endMs = at();
        rec.failure = (req.failure() && req.failure().errorText) || "failed";
      }
    });
    const page = context.pages()[0] || (await context.newPage());
    const seen = new Set();
    const addConsole = (source, msg) => {
      const loc = msg.location ? msg.location() : {};
      const rec = { source, type: msg.type(), text: msg.text(), url: loc && loc.url ? loc.url : undefined, atMs: at() };
      const key = `${rec.type}\u0000${rec.text}\u0000${rec.atMs}`;
      if (seen.has(key)) return; // the same message reported for the page and for its worker
      seen.add(key);
      consoleMessages.push(rec);
    };
    page.on("console", (msg) => {
      const worker = typeof msg.worker === "function" ? msg.worker() : null;
      addConsole(worker ? `worker ${worker.url()}` : "page", msg);
    });
    page.on("pageerror", (err) =>
      consoleMessages.push({ source: "page", type: "pageerror", text: String(err && err.stack ? err.stack : err), atMs: at() }),
    );
    page.on("crash", () => consoleMessages.push({ source: "page", type: "pageerror", text: "page crashed", atMs: at() }));
    page.on("worker", (worker) => {
      workers.push(worker.url());
      worker.on("console", (msg) => addConsole(`worker ${worker.url()}`, msg));
    });

    await page.goto(opts.url, { waitUntil: "load", timeout: opts.timeout * 1000 });

    const deadline = started + opts.timeout * 1000;
    let state = { viewer: false };
    let reason = "not checked";
    let previous = null;
    let shot = null;
    let ready = false;
    let settledWithFailures = 0;
    let readyWithoutChunks = 0;
    while (Date.now() < deadline) {
      state = await page.evaluate(pageState);
      const inFlight = requests.filter((r) => !r.done && !/\/events\//.test(r.url));
      reason = notReadyReason(state, inFlight);
      if (state.viewer && state.layers.some((l) => l.sources.some((s) => s.state === "error"))) {
        reason = "a data source failed to load";
        break;
      }
      // Sources loaded and the viewer ready, yet no chunk wanted: the sources' bounds are empty
      // (for DVID: Extended.MinPoint/MaxPoint), and that does not change by waiting.
      if (reason === "no chunk source has visible chunks" && state.viewerReady) {
        if (++readyWithoutChunks >= 20) {
          reason = "no chunk source has visible chunks (bounds empty?)";
          break;
        }
      } else {
        readyWithoutChunks = 0;
      }
      // Failed chunks are not retried: once nothing else is pending, waiting longer shows nothing new.
      if (reason === "viewer.isReady() is false" && state.chunkSources.some((c) => c.visibleFailed > 0)) {
        if (++settledWithFailures >= 4) {
          reason = "chunks failed";
          break;
        }
      } else {
        settledWithFailures = 0;
      }
      if (reason === null) {
        shot = await page.screenshot({ type: "png" });
        if (previous !== null && Buffer.compare(previous, shot) === 0) {
          ready = true;
          break;
        }
        previous = shot;
        reason = "screenshot not yet stable";
      } else {
        previous = null;
      }
      await sleep(500);
    }
    // On a timeout or a failed source, still keep what the page shows.
    if (!ready || shot === null) shot = await page.screenshot({ type: "png" });
    fs.mkdirSync(path.dirname(path.resolve(opts.out)), { recursive: true });
    fs.writeFileSync(opts.out, shot);
    const rects = await page.evaluate(pagePanels);
    const stats = await page.evaluate(pagePixelStats, {
      png: shot.toString("base64"),
      rects,
      sentinel: opts.sentinel.replace(/^#/, "").toLowerCase(),
      inset: 3,
    });
    const panels = rects.map((r, i) => ({ ...r, ...stats[i] }));
    const isAbort = (r) => r.failure && /ERR_ABORTED/.test(r.failure);
    const report = {
      url: opts.url,
      screenshot: path.resolve(opts.out),
      ready,
      reason,
      elapsedMs: Date.now() - started,
      viewport: [opts.width, opts.height],
      viewerReady: state.viewerReady,
      layers: state.layers || [],
      chunkSources: state.chunkSources || [],
      panels,
      failed: requests.filter((r) => (r.status !== null && r.status >= 400) || (r.failure && !isAbort(r))),
      aborted: requests.filter(isAbort),
      requests,
      console: consoleMessages,
      // Chromium asks every page's server for /favicon.ico; Neuroglancer's Python server has none.
      // Neuroglancer's chunk worker reports a failed download or decode with console.log.
      errors: consoleMessages.filter(
        (m) =>
          ((m.type === "error" || m.type === "pageerror") && !(m.url && m.url.endsWith("/favicon.ico"))) ||
          /^Error retrieving chunk/.test(m.text),
      ),
      workers,
    };
    const json = JSON.stringify(report, null, 1);
    if (opts.report) fs.writeFileSync(opts.report, json);
    process.stdout.write(json + "\n");
  } finally {
    if (context) await context.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`shoot.mjs: ${err && err.stack ? err.stack : err}\n`);
  process.exit(2);
});

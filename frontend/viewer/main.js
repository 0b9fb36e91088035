// Corelab's image viewer: Cornerstone3D over Corelab's own DICOMweb (/dicomweb, session cookie).
// Every element marked data-corelab-viewer becomes a viewer of the study named by its data-study-url:
// series list, two stack viewports side by side (baseline / follow-up, or two series) with optional
// synchronized scrolling, window/level presets, zoom, pan, length and bidirectional measurements.
import {
  init as coreInit, RenderingEngine, Enums, eventTarget, cache, imageRetrievalPoolManager, getRenderingCapabilities, getShouldUseCPURendering, setUseCPURendering,
} from "@cornerstonejs/core";
import { init as loaderInit, wadors } from "@cornerstonejs/dicom-image-loader";
import {
  init as toolsInit, addTool, ToolGroupManager, Enums as ToolEnums, annotation,
  WindowLevelTool, ZoomTool, PanTool, StackScrollTool, LengthTool, BidirectionalTool, utilities as toolUtilities,
} from "@cornerstonejs/tools";
import { addFromGeometry, imageIdFor, removeLesion, toGeometry } from "./measure.js";
import { createSliceSynchronizer } from "./sync.js";

// centre / width in Hounsfield units
export const PRESETS = {
  lung: { center: -600, width: 1500, label: "Lung" },
  soft: { center: 40, width: 400, label: "Soft tissue" },
  bone: { center: 300, width: 2000, label: "Bone" },
  brain: { center: 40, width: 80, label: "Brain" },
};
const PRIMARY_TOOLS = {
  wl: WindowLevelTool.toolName, zoom: ZoomTool.toolName, pan: PanTool.toolName,
  length: LengthTool.toolName, bidirectional: BidirectionalTool.toolName,
};
const { MouseBindings } = ToolEnums;
const PREFETCH_REQUESTS = 4;  // leaves the browser's other connections to the slices the reader asks for

let initialized = null;
let renderer = null;  // "gpu" (WebGL) or "cpu" (Cornerstone's own canvas renderer)
function initOnce() {
  if (!initialized) {
    initialized = (async () => {
      await coreInit();
      // Without a GPU, Chromium still offers WebGL through a software rasterizer (SwiftShader, llvmpipe): each
      // slice is then drawn by an emulated GPU and copied back into the page's canvas, which costs several
      // times what Cornerstone's CPU renderer needs for a 2D slice. Measured in bench/viewer.py.
      if (getRenderingCapabilities().softwareRasterizer) setUseCPURendering(true);
      renderer = getShouldUseCPURendering() ? "cpu" : "gpu";
      loaderInit({ maxWebWorkers: Math.max(1, Math.min(4, (navigator.hardwareConcurrency || 2) - 1)) });
      // A few prefetch requests at a time rather than Cornerstone's 200: the browser opens 6 connections to a
      // server, so the rest would only wait in its queue, ahead of the slice the reader scrolls to next.
      imageRetrievalPoolManager.setMaxSimultaneousRequests(Enums.RequestType.Prefetch, PREFETCH_REQUESTS);
      toolsInit();
      for (const tool of [WindowLevelTool, ZoomTool, PanTool, StackScrollTool, LengthTool, BidirectionalTool]) {
        addTool(tool);
      }
    })();
  }
  return initialized;
}

class Viewer {
  constructor(element, index) {
    this.element = element;
    this.id = `corelab-viewer-${index}`;
    this.loader = element.corelabLoader;  // the study's requests, which preload.js started (start() checks)
    this.root = this.loader?.root;
    this.status = element.querySelector("[data-viewer-status]");
    this.seriesList = element.querySelector("[data-viewer-series]");
    this.measurements = element.querySelector("[data-viewer-measurements]");
    this.panes = [...element.querySelectorAll("[data-viewport]")];
    this.active = this.panes[0].dataset.viewport;
    this.primary = "wl";
    this.series = [];
    this.loaded = {};
    // in the read form: at a follow-up the baseline's studies (left pane) beside this timepoint's
    this.baselineUids = this.loader?.baselineUids || [];
    this.currentPane = this.baselineUids.length && this.panes[1] ? this.panes[1].dataset.viewport : this.panes[0].dataset.viewport;
    this.pending = null;  // the lesion a measure button armed the tool for
  }

  say(text) { if (this.status) this.status.textContent = text; }

  viewport(id = this.active) { return this.engine.getViewport(`${this.id}-${id}`); }

  async start() {
    if (!this.loader) throw new Error("its request script (viewer-preload.js) did not run first");
    await initOnce();
    this.renderer = renderer;
    this.engine = new RenderingEngine(this.id);
    this.engine.setViewports(this.panes.map((pane) => ({
      viewportId: `${this.id}-${pane.dataset.viewport}`,
      type: Enums.ViewportType.STACK,
      element: pane.querySelector("[data-viewport-canvas]"),
      defaultOptions: { background: [0, 0, 0] },
    })));
    this.tools = ToolGroupManager.createToolGroup(`${this.id}-tools`);
    for (const name of [WindowLevelTool, ZoomTool, PanTool, StackScrollTool, LengthTool, BidirectionalTool]) {
      this.tools.addTool(name.toolName);
    }
    this.tools.setToolActive(WindowLevelTool.toolName, { bindings: [{ mouseButton: MouseBindings.Primary }] });
    this.tools.setToolActive(PanTool.toolName, { bindings: [{ mouseButton: MouseBindings.Auxiliary }] });
    this.tools.setToolActive(ZoomTool.toolName, { bindings: [{ mouseButton: MouseBindings.Secondary }] });
    this.tools.setToolActive(StackScrollTool.toolName, { bindings: [{ mouseButton: MouseBindings.Wheel }] });
    this.tools.setToolPassive(LengthTool.toolName);
    this.tools.setToolPassive(BidirectionalTool.toolName);
    this.sync = createSliceSynchronizer(`${this.id}-slice-sync`);
    for (const pane of this.panes) {
      const viewportId = `${this.id}-${pane.dataset.viewport}`;
      this.tools.addViewport(viewportId, this.id);
      this.sync.add({ renderingEngineId: this.id, viewportId });
      pane.addEventListener("pointerdown", () => this.activate(pane.dataset.viewport));
      pane.querySelector("[data-viewport-canvas]").addEventListener(Enums.Events.STACK_NEW_IMAGE, () => this.showSlice(pane));
      pane.querySelector("[data-viewport-canvas]").addEventListener("contextmenu", (e) => e.preventDefault());
    }
    this.wireToolbar();
    for (const event of [ToolEnums.Events.ANNOTATION_COMPLETED, ToolEnums.Events.ANNOTATION_MODIFIED,
      ToolEnums.Events.ANNOTATION_REMOVED]) {
      eventTarget.addEventListener(event, () => this.listMeasurements());
    }
    eventTarget.addEventListener(ToolEnums.Events.ANNOTATION_COMPLETED, (evt) => this.measured(evt.detail.annotation));
    // a lesion's measurement whose handles the reader drags: the form follows
    eventTarget.addEventListener(ToolEnums.Events.ANNOTATION_MODIFIED, (evt) => {
      const ann = evt.detail.annotation;
      if (evt.detail.changeType !== ToolEnums.ChangeTypes.HandlesUpdated || !ann?.metadata?.corelabLesion || ann.isLocked) return;
      const tool = ann.metadata.toolName === BidirectionalTool.toolName ? "bidirectional" : "length";
      const button = [...document.querySelectorAll("[data-measure-lesion]")].find(
        (b) => b.dataset.measureLesion === ann.metadata.corelabLesion && b.dataset.measureTool === tool);
      if (button) this.fill(button, ann);
    });
    await this.loadStudies(this.loader.series);
    if (this.element.dataset.state === "ready") await this.restoreAnnotations();
    this.wireLesionButtons();
  }

  wireToolbar() {
    for (const button of this.element.querySelectorAll("[data-preset]")) {
      button.addEventListener("click", () => this.applyPreset(button.dataset.preset));
    }
    for (const button of this.element.querySelectorAll("[data-tool]")) {
      button.addEventListener("click", () => this.setPrimary(button.dataset.tool));
    }
    const reset = this.element.querySelector("[data-viewer-reset]");
    reset?.addEventListener("click", () => { const vp = this.viewport(); vp.resetCamera(); vp.resetProperties(); vp.render(); });
    const syncBox = this.element.querySelector("[data-viewer-sync]");
    syncBox?.addEventListener("change", () => this.sync.setEnabled(syncBox.checked));
    if (syncBox) this.sync.setEnabled(syncBox.checked);
  }

  activate(name) {
    this.active = name;
    for (const pane of this.panes) pane.classList.toggle("active", pane.dataset.viewport === name);
  }

  setPrimary(tool) {
    if (!PRIMARY_TOOLS[tool]) return;
    const previous = PRIMARY_TOOLS[this.primary];
    if (previous === LengthTool.toolName || previous === BidirectionalTool.toolName) {
      this.tools.setToolPassive(previous);
    } else if (previous !== PRIMARY_TOOLS[tool]) {
      // zoom and pan keep their own buttons; window/level goes back to having none
      const keep = { [ZoomTool.toolName]: MouseBindings.Secondary, [PanTool.toolName]: MouseBindings.Auxiliary }[previous];
      if (keep) this.tools.setToolActive(previous, { bindings: [{ mouseButton: keep }] });
      else this.tools.setToolPassive(previous);
    }
    this.tools.setToolActive(PRIMARY_TOOLS[tool], { bindings: [{ mouseButton: MouseBindings.Primary }] });
    this.primary = tool;
    for (const button of this.element.querySelectorAll("[data-tool]")) {
      button.setAttribute("aria-pressed", String(button.dataset.tool === tool));
    }
  }

  applyPreset(name) {
    const preset = PRESETS[name];
    if (!preset) return;
    const targets = this.panes.map((p) => this.viewport(p.dataset.viewport)).filter((vp) => vp.getImageIds().length);
    for (const vp of targets) {
      vp.setProperties({ voiRange: { lower: preset.center - preset.width / 2, upper: preset.center + preset.width / 2 } });
      vp.render();
    }
    this.element.dataset.preset = name;
  }

  async loadStudies(fetching) {
    this.say("Loading the study…");
    try {
      this.series = await fetching;
    } catch (error) {
      this.say(error.status === 404 ? "No archived images of this study to show yet." : `Could not load the study (${error.message}).`);
      this.element.dataset.state = "empty";
      return;
    }
    this.renderSeriesList();
    if (!this.series.length) {
      this.say("No archived images of this study to show yet.");
      this.element.dataset.state = "empty";
      return;
    }
    if (this.baselineUids.length && this.panes[1]) {
      // follow-up: baseline on the left, this timepoint on the right
      const baseline = this.series.find((s) => s.role === "baseline");
      const current = this.series.find((s) => s.role === "current");
      await this.show(this.panes[0].dataset.viewport, baseline || current);
      await this.show(this.panes[1].dataset.viewport, current || baseline);
      this.activate(this.currentPane);
    } else {
      const [first, second] = this.series;
      await this.show(this.panes[0].dataset.viewport, first);
      if (this.panes[1]) await this.show(this.panes[1].dataset.viewport, second || first);
    }
    this.element.dataset.state = "ready";
    this.say(`${this.series.length} series. Scroll with the wheel, drag to window, right-drag to zoom, middle-drag to pan.`);
  }

  renderSeriesList() {
    this.seriesList.replaceChildren(...this.series.map((s, n) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.series = String(n);
      button.textContent = `${s.role === "baseline" ? "Baseline · " : ""}Series ${s.number ?? "?"} · ${s.modality} · ${s.count} image${s.count === 1 ? "" : "s"}${s.description ? ` · ${s.description}` : ""}`;
      button.addEventListener("click", () => this.show(this.active, s));
      item.append(button);
      return item;
    }));
  }

  async imageIds(series) {
    return (await this.loader.frames(series)).map(({ url, instance }) => {
      const imageId = `wadors:${url}`;
      wadors.metaDataManager.add(imageId, instance);
      return imageId;
    });
  }

  async show(paneName, series) {
    const started = performance.now();
    const pane = this.panes.find((p) => p.dataset.viewport === paneName);
    const ids = await this.imageIds(series);
    const vp = this.viewport(paneName);
    const drawn = new Promise((resolve) => vp.element.addEventListener(Enums.Events.IMAGE_RENDERED, resolve, { once: true }));
    await vp.setStack(ids, 0);
    vp.render();
    // then fetch the rest of the series in the background, nearest slices first, so scrolling finds them cached;
    // only once the first image is on screen: queueing the series' requests takes the page a few hundred ms
    drawn.then(() => requestAnimationFrame(() => setTimeout(() => toolUtilities.stackPrefetch.enable(vp.element))));
    this.loaded[paneName] = { series, firstImageMs: performance.now() - started };
    pane.querySelector("[data-viewport-label]").textContent = `${series.role === "baseline" ? "Baseline · " : ""}Series ${series.number ?? "?"} · ${series.modality}`;
    this.showSlice(pane);
  }

  showSlice(pane) {
    const vp = this.viewport(pane.dataset.viewport);
    const total = vp.getImageIds().length;
    const slice = pane.querySelector("[data-viewport-slice]");
    if (slice && total) slice.textContent = `${vp.getCurrentImageIdIndex() + 1} / ${total}`;
  }

  listMeasurements() {
    const all = annotation.state.getAllAnnotations().filter((a) => [LengthTool.toolName, BidirectionalTool.toolName].includes(a.metadata?.toolName));
    this.measurements.replaceChildren(...all.map((a) => {
      const stats = Object.values(a.data?.cachedStats || {})[0] || {};
      const item = document.createElement("li");
      item.dataset.tool = a.metadata.toolName;
      const mm = (v) => (typeof v === "number" ? `${v.toFixed(1)} mm` : "…");
      // the lesion it measures ("T1"; at adjudication "A · W6 · T1"), where it has one
      const label = a.data?.label ? `${a.data.label}: ` : "";
      item.textContent = a.metadata.toolName === LengthTool.toolName
        ? `${label}Length ${mm(stats.length)}`
        : `${label}Bidirectional ${mm(stats.length)} × ${mm(stats.width)}`;
      return item;
    }));
  }

  // for tests and the benchmark: what is on screen
  state() {
    const panes = {};
    for (const pane of this.panes) {
      const vp = this.viewport(pane.dataset.viewport);
      const voi = vp.getProperties().voiRange;
      panes[pane.dataset.viewport] = { index: vp.getCurrentImageIdIndex(), total: vp.getImageIds().length,
        cached: vp.getImageIds().filter((id) => cache.isLoaded(id)).length,
        voi: voi ? [voi.lower, voi.upper] : null, firstImageMs: this.loaded[pane.dataset.viewport]?.firstImageMs };
    }
    return { state: this.element.dataset.state, renderer: this.renderer, panes,
      measurements: annotation.state.getAllAnnotations().map((a) => ({ tool: a.metadata?.toolName, stats: a.data?.cachedStats,
        lesion: a.metadata?.corelabLesion, label: a.data?.label, locked: Boolean(a.isLocked), imageId: a.metadata?.referencedImageId,
        index: this.panes.map((p) => this.viewport(p.dataset.viewport).getImageIds().indexOf(a.metadata?.referencedImageId))
          .find((i) => i >= 0) ?? -1 })) };
  }

  // -- measuring in the read form (templates/reads/task.html) ----------------------------------------------

  wireLesionButtons() {
    const watched = new Set();
    for (const button of document.querySelectorAll("[data-measure-lesion]")) {
      button.disabled = this.element.dataset.state !== "ready";
      button.addEventListener("click", () => this.arm(button));
      // a diameter typed over a measurement replaces it: the measurement and its drawing go, so the values
      // signed and the measurement report made from the geometry never disagree (the server checks it too)
      const form = button.form || document;
      for (const name of [button.dataset.longField, button.dataset.shortField, button.dataset.valueField]) {
        const input = name ? form.querySelector(`[name="${name}"]`) : null;
        if (!input || watched.has(input)) continue;
        watched.add(input);
        input.addEventListener("input", (event) => {
          const hidden = form.querySelector(`[name="${button.dataset.annotationField}"]`);
          if (!event.isTrusted || !hidden?.value) return;  // fill() dispatches its own, untrusted, events
          hidden.value = "";
          removeLesion(button.dataset.measureLesion);
          this.listMeasurements();
          this.engine.render();
          this.say(`${button.dataset.label}: typed by hand, so its measurement in the viewer was removed.`);
        });
      }
    }
    for (const button of document.querySelectorAll("[data-goto-baseline]")) {
      button.disabled = this.element.dataset.state !== "ready";
      button.addEventListener("click", () => this.gotoBaseline(JSON.parse(button.dataset.gotoBaseline), button.dataset.label));
    }
  }

  arm(button) {
    this.pending = button;
    for (const other of document.querySelectorAll("[data-measure-lesion]")) {
      other.setAttribute("aria-pressed", String(other === button));
    }
    this.activate(this.currentPane);
    this.setPrimary(button.dataset.measureTool);
    this.element.scrollIntoView({ block: "nearest", behavior: "instant" });  // the rows are below the viewer
    this.say(`Draw the ${button.dataset.measureTool === "bidirectional" ? "long and short axes" : "long axis"} of ${button.dataset.label} on this timepoint's image.`);
  }

  measured(ann) {
    const button = this.pending;
    if (!button || !ann?.metadata || ann.metadata.corelabLesion) return;
    // the pane drawn on is the active one (a pointerdown activates its pane)
    if (this.active !== this.currentPane && this.baselineUids.length) {
      this.say("Measure on this timepoint's images (the baseline pane is for comparison): the measurement was not used.");
      return;
    }
    const lesion = button.dataset.measureLesion;
    removeLesion(lesion);
    ann.metadata.corelabLesion = lesion;
    ann.data.label = button.dataset.label;
    if (!this.fill(button, ann)) return;
    this.pending = null;
    button.setAttribute("aria-pressed", "false");
    this.setPrimary("wl");
  }

  // the lesion's row gets the measurement: its diameter field(s), and the geometry in its hidden field
  fill(button, ann) {
    const geometry = toGeometry(ann);
    if (!geometry) return false;
    const form = button.form || document;
    const field = (name) => (name ? form.querySelector(`[name="${name}"]`) : null);
    const put = (name, mm) => { const input = field(name); if (input && mm !== undefined) input.value = String(mm); return input; };
    const hidden = field(button.dataset.annotationField);
    if (hidden) hidden.value = JSON.stringify(geometry);
    const state = field(button.dataset.stateField);
    if (state) state.value = "measured";
    let changed;
    if (button.dataset.valueField) {  // a follow-up's single diameter: short axis for a node, else long axis
      changed = put(button.dataset.valueField, button.dataset.nodal === "true" && geometry.short_mm !== undefined ? geometry.short_mm : geometry.long_mm);
    } else {
      changed = put(button.dataset.longField, geometry.long_mm);
      changed = put(button.dataset.shortField, geometry.short_mm) || changed;
    }
    this.say(`${button.dataset.label}: ${geometry.long_mm} mm${geometry.short_mm !== undefined ? ` × ${geometry.short_mm} mm` : ""} entered in the form.`);
    // the form recomputes the responses (htmx) as if the reader had typed the value
    changed?.dispatchEvent(new Event("input", { bubbles: true }));
    changed?.dispatchEvent(new Event("change", { bubbles: true }));
    return true;
  }

  async showGeometry(paneName, geometry, options) {
    const series = this.series.find((s) => s.seriesUid === geometry.series_uid && s.studyUid === geometry.study_uid);
    if (!series) return -1;
    if (this.loaded[paneName]?.series !== series) await this.show(paneName, series);
    const vp = this.viewport(paneName);
    const index = vp.getImageIds().indexOf(imageIdFor(this.root, geometry));
    if (index < 0) return -1;
    removeLesion(options.lesion, { locked: Boolean(options.locked) });
    addFromGeometry(vp, this.root, geometry, options);
    return index;
  }

  // a saved draft (or a correction's read) shows its annotations again, on the slice they were drawn on
  async restoreAnnotations() {
    const first = new Map();  // pane -> the slice of its first restored measurement
    for (const input of document.querySelectorAll("[data-annotation-lesion]")) {
      if (!input.value) continue;
      let geometry;
      try { geometry = JSON.parse(input.value); } catch { continue; }
      // drawn in the pane already showing its series (baseline left, follow-up right), else the current one
      const pane = this.panes.map((p) => p.dataset.viewport).find((name) => {
        const shown = this.loaded[name]?.series;
        return shown && shown.seriesUid === geometry.series_uid && shown.studyUid === geometry.study_uid;
      }) || this.currentPane;
      const index = await this.showGeometry(pane, geometry, { lesion: input.dataset.annotationLesion,
        label: input.dataset.label, locked: input.hasAttribute("data-locked") });
      if (index >= 0 && !first.has(pane)) first.set(pane, index);
    }
    for (const [pane, index] of first) await this.scrollTo(pane, index);
    this.listMeasurements();
  }

  // a follow-up: the baseline pane jumps to the slice where the reader measured this lesion at baseline
  async gotoBaseline(geometry, label) {
    const pane = this.baselineUids.length ? this.panes[0].dataset.viewport : this.currentPane;
    const index = await this.showGeometry(pane, geometry, { lesion: `baseline:${label}`, label: `${label} (baseline)`, locked: true });
    if (index < 0) { this.say(`The baseline image of ${label} is not available.`); return; }
    await this.scrollTo(pane, index);
    // the follow-up pane goes to the same place, where the lesion should be now (when scrolling is synchronized)
    this.sync.jump({ renderingEngineId: this.id, viewportId: `${this.id}-${pane}` }, index);
    this.say(`Baseline: ${label} was measured on slice ${index + 1}.`);
  }

  async scrollTo(paneName, index) {
    const vp = this.viewport(paneName);
    await vp.setImageIdIndex(index);
    this.showSlice(this.panes.find((p) => p.dataset.viewport === paneName));
  }
}

const viewers = [];
window.corelabViewers = viewers;
document.querySelectorAll("[data-corelab-viewer]").forEach((element, n) => {
  const viewer = new Viewer(element, n);
  viewers.push(viewer);
  viewer.ready = viewer.start().catch((error) => {
    element.dataset.state = "error";
    viewer.say(`The viewer failed to start: ${error.message}`);
    throw error;
  });
});

// What the viewer asks Corelab's DICOMweb before it can draw: each study's series (QIDO) and the first series'
// metadata. preload.js (which alone imports this module, so it needs no other script) starts these requests as
// soon as the page is parsed, while the viewer's bundle (Cornerstone, several MB of script) is still loading;
// main.js, which runs after it, picks up the same promises from the element (`element.corelabLoader`).

export const value = (data, tag) => data?.[tag]?.Value?.[0];

export async function getJson(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/dicom+json, application/json" } });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch { /* not JSON */ }
    const error = new Error(`${response.status}: ${detail}`);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

// slices in space order (along the slice normal), else by instance number
export function sortInstances(instances) {
  const position = (i) => {
    const ipp = i["00200032"]?.Value;
    const iop = i["00200037"]?.Value;
    if (!ipp || !iop) return null;
    const [a, b, c, d, e, f] = iop.map(Number);
    const normal = [b * f - c * e, c * d - a * f, a * e - b * d];
    return normal[0] * ipp[0] + normal[1] * ipp[1] + normal[2] * ipp[2];
  };
  const all = instances.map((i) => ({ i, p: position(i), n: Number(value(i, "00200013") || 0) }));
  const spatial = all.every((x) => x.p !== null);
  all.sort((x, y) => (spatial ? x.p - y.p : x.n - y.n));
  return all.map((x) => x.i);
}

// series of documents, not images: measurement reports (SR), key objects (KO), presentation states (PR)
const NOT_IMAGES = new Set(["SR", "KO", "PR", "DOC"]);

// One viewer element's requests: `series` (a promise of the series list, baseline first) and `metadata(series)`
// (a promise of its sorted metadata, asked for once however many panes show it).
export class StudyLoader {
  constructor(element) {
    this.root = new URL(element.dataset.dicomweb || "/dicomweb", window.location.href).href.replace(/\/$/, "");
    const uids = (name) => (element.dataset[name] ? JSON.parse(element.dataset[name]) : null);
    this.studyUids = uids("studyUids") || [];
    this.baselineUids = uids("baselineStudyUids") || [];
    this.cache = new Map();
    this.series = this.fetchSeries();
    this.series.catch(() => {});  // reported by the viewer
  }

  async fetchSeries() {
    const studies = [...this.baselineUids.map((uid) => [uid, "baseline"]), ...this.studyUids.map((uid) => [uid, "current"])];
    const lists = await Promise.all(studies.map(([studyUid]) => getJson(`${this.root}/studies/${studyUid}/series`)));
    const found = [];
    studies.forEach(([studyUid, role], n) => {
      for (const s of lists[n]) {
        // a measurement report (DICOM SR) or another document has no images to show
        if (NOT_IMAGES.has(value(s, "00080060"))) continue;
        found.push({ studyUid, role, seriesUid: value(s, "0020000E"), number: value(s, "00200011"),
          modality: value(s, "00080060") || "", description: value(s, "0008103E") || "",
          count: value(s, "00201209") || 0 });
      }
    });
    const first = found.find((s) => s.role === "baseline") || found[0];
    if (first) this.metadata(first).catch(() => {});  // the left pane's; errors surface when it is shown
    return found;
  }

  seriesBase(series) { return `${this.root}/studies/${series.studyUid}/series/${series.seriesUid}`; }

  // each frame of the series, in slice order: its WADO-RS URL and its instance's metadata
  async frames(series) {
    const base = this.seriesBase(series);
    const found = [];
    for (const instance of await this.metadata(series)) {
      const count = Number(value(instance, "00280008") || 1);
      for (let frame = 1; frame <= count; frame += 1) {
        found.push({ url: `${base}/instances/${value(instance, "00080018")}/frames/${frame}`, instance });
      }
    }
    return found;
  }

  metadata(series) {
    const base = this.seriesBase(series);
    if (!this.cache.has(base)) {
      const request = getJson(`${base}/metadata`).then(sortInstances);
      request.catch(() => this.cache.delete(base));  // a failure is not remembered: asking again retries
      this.cache.set(base, request);
    }
    return this.cache.get(base);
  }
}

// the loader of a viewer element: the one preload.js started, else a new one
export function loaderFor(element) {
  if (!element.corelabLoader) element.corelabLoader = new StudyLoader(element);
  return element.corelabLoader;
}

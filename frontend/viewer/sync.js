// Synchronized scrolling: when one pane shows a new slice, the other goes to the slice nearest in space.
// Cornerstone's image slice synchronizer does the same, but looks up the position of every slice of the other
// series on each step (500 metadata look-ups per frame for a 500-slice CT); here each series' positions are
// read once, and two panes showing the same series simply share the index.
import { Enums, getRenderingEngine, metaData, utilities as csUtils } from "@cornerstonejs/core";
import { SynchronizerManager } from "@cornerstonejs/tools";

const positions = new Map();  // a stack's identity -> Float64Array of x, y, z per slice

function stackKey(ids) { return `${ids.length}|${ids[0]}|${ids[ids.length - 1]}`; }

function positionsOf(ids) {
  const key = stackKey(ids);
  let found = positions.get(key);
  if (!found) {
    found = new Float64Array(ids.length * 3).fill(NaN);
    ids.forEach((id, n) => {
      const ipp = metaData.get("imagePlaneModule", id)?.imagePositionPatient;
      if (ipp) found.set(ipp.map(Number), n * 3);
    });
    positions.set(key, found);
  }
  return found;
}

function coplanar(a, b) {
  const n1 = a.getCamera().viewPlaneNormal;
  const n2 = b.getCamera().viewPlaneNormal;
  return Math.abs(n1[0] * n2[0] + n1[1] * n2[1] + n1[2] * n2[2]) > 0.99;
}

// the source position in the target's frame of reference: as is within one frame of reference, else through
// Cornerstone's spatial registration of the two viewports (computed once per pair)
function registered(point, source, target) {
  const provider = csUtils.spatialRegistrationMetadataProvider;
  let matrix = provider.get("spatialRegistrationModule", target.id, source.id);
  if (!matrix) {
    if (source.getFrameOfReferenceUID() === target.getFrameOfReferenceUID()) return point;
    csUtils.calculateViewportsSpatialRegistration(source, target);
    matrix = provider.get("spatialRegistrationModule", target.id, source.id);
    if (!matrix) return null;
  }
  const [x, y, z] = point;  // gl-matrix's mat4 is column-major
  const w = matrix[3] * x + matrix[7] * y + matrix[11] * z + matrix[15] || 1;
  return [0, 1, 2].map((r) => (matrix[r] * x + matrix[4 + r] * y + matrix[8 + r] * z + matrix[12 + r]) / w);
}

function nearest(point, table) {
  let best = -1;
  let bestDistance = Infinity;
  for (let n = 0; n < table.length; n += 3) {
    const d = (table[n] - point[0]) ** 2 + (table[n + 1] - point[1]) ** 2 + (table[n + 2] - point[2]) ** 2;
    if (d < bestDistance) { bestDistance = d; best = n / 3; }
  }
  return best;
}

// The other pane is moved without waiting for its slice: Cornerstone's synchronizer ignores new events while a
// callback is still running, so waiting would drop steps of a fast scroll (the panes end apart). The other pane's
// own new-slice events, which come back here, are recognized as echoes until it has arrived, and go no further.
const echoes = new Map();  // viewport id -> the slice this synchronizer last sent it to

function follow(synchronizer, sourceRef, targetRef, event) {
  const engine = getRenderingEngine(targetRef.renderingEngineId);
  const source = engine?.getViewport(sourceRef.viewportId);
  const target = engine?.getViewport(targetRef.viewportId);
  if (!source || !target) return;
  const sourceIds = source.getImageIds();
  const targetIds = target.getImageIds();
  if (!sourceIds.length || !targetIds.length) return;
  const at = event?.detail?.imageIdIndex ?? source.getCurrentImageIdIndex();
  if (echoes.has(sourceRef.viewportId)) {
    // a pane on its way to where this synchronizer sent it leads nothing: its slices are echoes, possibly stale
    if (echoes.get(sourceRef.viewportId) === at) echoes.delete(sourceRef.viewportId);
    return;
  }
  if (source.getCurrentImageIdIndex() !== at) return;  // the pane has been asked for another slice since
  let index;
  if (stackKey(sourceIds) === stackKey(targetIds)) {
    index = at;
  } else {
    if (!coplanar(source, target)) return;
    const table = positionsOf(sourceIds);
    const point = registered([table[at * 3], table[at * 3 + 1], table[at * 3 + 2]], source, target);
    if (!point || point.some(Number.isNaN)) return;
    index = nearest(point, positionsOf(targetIds));
  }
  if (index >= 0 && index !== target.getCurrentImageIdIndex()) {
    echoes.set(targetRef.viewportId, index);
    target.setImageIdIndex(index).catch(() => echoes.delete(targetRef.viewportId));
  }
}

export function createSliceSynchronizer(id) {
  return SynchronizerManager.createSynchronizer(id, Enums.Events.STACK_NEW_IMAGE, follow);
}

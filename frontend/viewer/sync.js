// Synchronized scrolling: when the reader scrolls one pane, the other goes to the slice nearest in space.
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

// The panes follow the reader's scrolling (Cornerstone's STACK_VIEWPORT_SCROLL, which the wheel and the scroll
// tool raise on the pane scrolled, never on a pane moved by code) and the viewer's deliberate jumps (`jump`). A
// pane moved here raises no event back, so nothing echoes between the panes however fast the scroll: an earlier
// design followed every new slice shown (STACK_NEW_IMAGE), could not tell echoes from steps under load, and left
// the panes apart.
function follow(sourceRef, targetRef, at) {
  const engine = getRenderingEngine(targetRef.renderingEngineId);
  const source = engine?.getViewport(sourceRef.viewportId);
  const target = engine?.getViewport(targetRef.viewportId);
  if (!source || !target) return;
  const sourceIds = source.getImageIds();
  const targetIds = target.getImageIds();
  if (!sourceIds.length || !targetIds.length || !(at >= 0 && at < sourceIds.length)) return;
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
  // the slice it is showing or on its way to: a fast scroll moves it again before the last slice is drawn
  if (index >= 0 && index !== target.getTargetImageIdIndex()) target.setImageIdIndex(index).catch(() => {});
}

export function createSliceSynchronizer(id) {
  const synchronizer = SynchronizerManager.createSynchronizer(id, Enums.Events.STACK_VIEWPORT_SCROLL,
    (_, sourceRef, targetRef, event) => follow(sourceRef, targetRef, event.detail.newImageIdIndex));
  // after the viewer itself moved a pane (to a lesion's slice): the others go where it went, if synchronized
  synchronizer.jump = (sourceRef, index) => {
    if (synchronizer.isDisabled()) return;
    for (const targetRef of synchronizer.getTargetViewports()) {
      if (targetRef.viewportId !== sourceRef.viewportId) follow(sourceRef, targetRef, index);
    }
  };
  return synchronizer;
}

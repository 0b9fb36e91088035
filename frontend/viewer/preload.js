// Loaded before the viewer's bundle, and self-contained (no chunk to fetch first): start the DICOMweb requests of
// every viewer on the page now, so the series list and the first series' metadata are (nearly) there when
// Cornerstone has started. main.js runs after this script (module scripts run in document order) and takes
// each element's loader.
import { loaderFor } from "./dicomweb.js";

document.querySelectorAll("[data-corelab-viewer]").forEach(loaderFor);

// A few kilobytes loaded before the viewer's bundle: start the DICOMweb requests of every viewer on the page now,
// so the series list and the first series' metadata are (nearly) there when Cornerstone has started.
import { loaderFor } from "./dicomweb.js";

document.querySelectorAll("[data-corelab-viewer]").forEach(loaderFor);

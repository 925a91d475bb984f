// The image layer: CRIU's on-disk image format, read and written exactly.
// It knows files, entries and messages, nothing about processes.
export { ImageError, MissingImageError, WireError, printable } from './errors.js';
export { schema, messageType, protoDir } from './schema.js';
export { decodeMessage, encodeMessage, unknownFields, UNKNOWN_FIELDS, type Message } from './wire.js';
export {
  imageTypes,
  imageTypeByName,
  imageTypeByMagic,
  imageTypeForFile,
  imageFileName,
  IMG_COMMON_MAGIC,
  IMG_SERVICE_MAGIC,
  INVENTORY_MAGIC,
  IMAGES_VERSION,
  type ImageType,
  type HeadKind,
  type EntryLayout,
  type ExtraKind,
} from './magic.js';
export { decodeImage, encodeImage, imageOf, readHead, type Image, type ImageEntry } from './image.js';
export {
  tcpQueues,
  shmContents,
  semValues,
  queuedMessages,
  shmPayload,
  semPayload,
  queuedMessagesPayload,
} from './extra.js';
export {
  PAGE_SIZE,
  PE_PARENT,
  PE_LAZY,
  PE_PRESENT,
  readPagemap,
  pagemapEntry,
  pagemapImage,
  pagesFileName,
  entryPageCount,
  entryFlags,
  type PageRun,
  type Pagemap,
} from './pagemap.js';
export { ImageDir, RawWriter, INVENTORY_FILE, MANIFEST_FILE } from './image-dir.js';
export {
  PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, createPrivateFileSync, makePrivateDirs, openImageFileSync, readImageFileSync,
  writePrivateFileSync,
} from './private-file.js';
export { critJsonText, imageToCrit, messageToCrit, pythonJson, type CritValue } from './crit-json.js';
export { showImageFile, describeImageDir, showCommand } from './show.js';
export { describeImages } from './summary.js';
export { MemoryImages, PageRanges, type ImageSource } from './image-source.js';
export * from './vma.js';

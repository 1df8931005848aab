/* image.h — decoded 8-bit RGB images and the decoders that produce them.
 *
 * Owns: llava_image (one malloc'd pixel block) and decoding of JPEG (libjpeg-turbo), PNG (libpng)
 * and WebP (libwebp) from memory or from a file.
 * Contract: the pixels equal Pillow's `Image.open(f).convert("RGB")` byte for byte (the input of the
 * transformers PIL image processor), including Pillow's quirks: 16-bit grayscale PNG saturates
 * (min(v, 255)), other 16-bit PNGs keep the high byte, palette indices beyond the PLTE give black,
 * alpha and tRNS are dropped without compositing, CMYK/YCCK JPEGs use Pillow's Adobe-inverted CMYK
 * to RGB formula. EXIF orientation and ICC profiles are ignored (Image.open does not apply them).
 * Never: allocates pixel memory before the header's width*height passed the max_pixels check,
 * crashes or leaks on corrupt input (every failure is a return of -1 with a message).
 */
#ifndef LLAVA_IMAGE_H
#define LLAVA_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "util/status.h"

/* Pillow's Image.MAX_IMAGE_PIXELS (decompression-bomb guard). */
#define LLAVA_DEFAULT_MAX_PIXELS 89478485

typedef struct llava_image {
    int w, h;
    uint8_t *rgb; /* (h, w, 3) row-major RGB, malloc'd; NULL when empty */
} llava_image;

/* Decodes a JPEG, PNG or WebP held in memory (format chosen by magic bytes) into *out.
 * max_pixels: refuse images with width*height above it (read from the header, before any pixel
 * allocation); <= 0 disables the check. name is only used in messages (NULL -> "image").
 * Returns 0, or -1 with *out zeroed and a one-line message in err (empty/unknown/corrupt/truncated
 * data, zero-sized or oversized image, out of memory). Animated WebP is refused. */
int llava_image_decode(llava_image *out, const void *bytes, size_t n, int64_t max_pixels,
                       const char *name, llava_err *err);

/* Maps the file at path and decodes it as above (messages name the path). */
int llava_image_load(llava_image *out, const char *path, int64_t max_pixels, llava_err *err);

/* Frees the pixels and zeroes *img; NULL and already-freed images are fine. */
void llava_image_free(llava_image *img);

#endif

/* convnet: classify images with pretrained CNNs and transfer-learn them, in C.
 * This umbrella header includes the whole public API. */
#ifndef CONVNET_H
#define CONVNET_H

#include "convnet/core.h"
#include "convnet/dist.h"
#include "convnet/image.h"
#include "convnet/io.h"
#include "convnet/layers.h"
#include "convnet/model.h"
#include "convnet/train.h"
#include "convnet/stats.h"
#include "convnet/synth.h"
#include "convnet/viz.h"

#define CONVNET_VERSION "0.1.0"

#endif

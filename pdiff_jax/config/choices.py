"""Every allowed value of every config field that takes one of a fixed set: the only place
they are written down. Plain data, no JAX: the config check, the modules that consume
the values and the generator's kind registry all read them from here.
"""

# zoo
ZOO_MODES = ("subset", "seed")            # snapshots of one network's subset / K seeded nets
ZOO_STACKS = ("vmap", "unrolled", "grouped")
# 'merge_many': after weight matching to member 0, each member in turn is matched to the
# mean of the others until nothing changes (Git Re-Basin's MergeMany).
ZOO_ALIGNS = ("none", "weight_matching", "merge_many")
PLACEMENTS = ("auto", "host", "device")   # where a training set lives (runtime/dispatch.py)
PRECISIONS = ("f32", "bf16")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "step", "constant")
AUGMENTATIONS = ("", "crop_flip")         # '' = none
# zoo.source (zoo/sources/): the formats of an imported zoo, told apart by what the path holds
ZOO_SOURCE_FORMATS = ("small_cnn_zoo", "torch_state_dicts", "npz")
# zoo.source_filter's comparisons, longest first (so '>=' is never read as '>')
SOURCE_FILTER_OPERATORS = ("!=", ">=", "<=", "=", ">", "<")

# models
# model.kwargs.activation of 'small_cnn_zoo': the Keras activations the Small CNN Zoo trained with
SMALL_CNN_ZOO_ACTIVATIONS = ("relu", "tanh", "sigmoid", "selu")

# data
CHANNELS = (0, 1, 3)                      # 0 = as the data set has them

# generator
NORMALIZATION_MODES = ("coordinate", "tensor", "none")
# How the projection onto the zoo's principal coordinates is kept: rows f32[n, D], or
# coefficients f32[n, K] over the zoo's members (generator/implicit_basis.py)
NORMALIZATION_BASES = ("dense", "implicit")
AUTOENCODER_KINDS = ("conv", "fc", "paper", "vae", "identity")
DENOISER_KINDS = ("unet", "paper")        # trained by the diffusion stage
LATENT_FIT_KINDS = ("gaussian", "kde")    # fitted in closed form instead of a denoiser
DIFFUSION_MODEL_KINDS = DENOISER_KINDS + LATENT_FIT_KINDS
PAPER_AE_SIZES = ("medium", "small")
BEHAVIOUR_TARGETS = ("members", "labels")  # what decoded networks must match
VECTORIZE_NETWORKS = ("vmap", "loop")      # decoded networks in the behavioural term
NORMS = ("instance", "group", "batch", "none")
SAMPLERS = ("ddpm", "ddim")
CONDITION_KINDS = ("none", "level", "value")
CONDITION_ON = ("test", "train")

# evaluate
VECTORIZE = ("vmap", "map")
# The trivial generators of the accuracy-novelty frontier (evaluation/frontier.py).
FRONTIER_FAMILIES = ("noise", "interpolation", "dirichlet", "pca_gaussian", "finetune")
# What p-diff's frontier points sweep: the sampling temperature, or (a conditional
# generator) the guidance scale toward the zoo's top accuracy.
FRONTIER_PDIFF_KNOBS = ("temperature", "guidance", "latent_mix")

"""BERT pretraining (MLM + NSP) on Marcus Aurelius' *Meditations*, in two layers.

The teaching core, one module per stage, in the order the notebooks read them:
    config      one dataclass of every knob, three named profiles, the command line
    corpus      the text: download once, check, read as paragraphs
    pairs       sentences and 50/50 Next Sentence Prediction pairs
    tokens      WordPiece tokenizers and pair tokenization
    masking     MLM masking: the config's one rule (training, validation, the lesson), and the same by hand
    dataset     the Dataset, bucketing and the DataLoader
    model       stock BertForPreTraining, and PretrainingModel: what the loop trains, both losses at once
    baselines   the one table of accuracies and the baselines beside them: what counting alone scores
    memory      what a table of counts remembers of the book: its answer at a [MASK], and mixed with the model's
    report      every metric beside its baselines: the printout, metrics.json, the model card, the demo's panel
    scale       a run's size beside the bert-base profile's and BERT-base's (notebook 04)
    checkpoint  what the loop saves and resumes from: whole-or-absent folders, checksums, the loop's Progress, the lock
    tracking    the loop's Weights & Biases log, never fatal
    parts       the loop's named parts (forward, backward, measurement, ...), timed only when make bench asks
    train       the training loop and validation
    inference   reading the two heads of a trained model, its attention and its word embeddings

The core imports nothing from the plumbing. checkpoint, tracking and parts belong to the loop (it saves, resumes,
logs and names its parts), so they sit here; a learner can read their function names and skip their insides.

The plumbing, which a learner can skip:
    serving     a checkpoint made safe to serve: input hardening, errors as values, one request at a time
    app         the Gradio demo
    browser     pictures of the running demo, taken by a headless Chromium (notebook 06, the browser test)
    main        `make demo`: train unless trained, then serve
    provenance  where a number came from: the machine, the code's commit, the date
    record      the recorded run of the default profile that notebooks and README plot
    plots       the figures of the notebooks and the README
    explore     the notebooks' explorers: a table or figure per input, and ipywidgets controls to vary it
    colab       the notebooks' Colab cell: install what Colab lacks from the clone, keeping Colab's torch
"""

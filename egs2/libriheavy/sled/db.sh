# shellcheck shell=bash
# Where the corpora live on this machine. Edit these two lines (nothing is downloaded).
# LIBRIHEAVY: directory with the cased+punctuated LibriHeavy cut manifests
#   libriheavy_cuts_{small,medium,large,dev,test_clean,test_other}.jsonl[.gz]
#   (lhotse MonoCut JSON lines; see local/prepare_libriheavy.py)
# LIBRILIGHT: the audio root that recording.sources[0].source paths are relative to.
LIBRIHEAVY=${LIBRIHEAVY:-}
LIBRILIGHT=${LIBRILIGHT:-}

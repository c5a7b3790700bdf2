"""A TFKerasTrial model definition: cade does not run these."""

from determined import keras


class MnistTrial(keras.TFKerasTrial):
    pass

class MelLatent: pass
class MelStreamingDecoder: pass

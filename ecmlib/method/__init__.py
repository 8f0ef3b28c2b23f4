"""The method: ECM's network, its losses, localisation and detection mAP."""

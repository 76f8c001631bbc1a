"""The domain core: state machine, validation, pricing. Imports no infrastructure."""

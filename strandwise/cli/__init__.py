"""strandwise.cli"""

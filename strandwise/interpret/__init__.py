"""strandwise.interpret"""

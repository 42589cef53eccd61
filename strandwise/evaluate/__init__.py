"""strandwise.evaluate"""

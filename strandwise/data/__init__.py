"""strandwise.data"""
